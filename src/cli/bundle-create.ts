import { createBundle, type CreatedBundle } from '../bundle/create.js';
import { DEFAULT_UNIT_SIZE, MAX_UNIT_SIZE } from '../bundle/block-index.js';
import { DEFAULT_CHUNK_SIZE, DEFAULT_CREATE_FORMAT, FORMAT_VERSIONS, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE } from '../bundle/format.js';
import { compressionsOf, type Compression } from '../bundle/manifest.js';
import { UsageError, integerOption, parseCommandArgs, required, type Command } from './command.js';
import { asCommandError, describeBytes, readKeyFile } from './bundle-shared.js';

const help = `Usage: piota bundle create [--key KEY] --version V --compatible MODEL [--compatible ...]
                           --payload NAME=FILE [--payload ...] [--compress gzip|none]
                           [--security-version N] [--chunk-size SIZE] [--format 1|2]
                           [--unit-size SIZE] --out FILE

Makes a bundle: a signed manifest, then each payload image cut into chunks that are compressed
and hashed one by one (so a multi-GiB image is streamed, never held in memory).

Options:
  --key KEY              ed25519 private key (PEM PKCS#8) to sign with; leave it out to make an
                         unsigned bundle and sign it elsewhere with piota bundle sign
  --version V            the firmware version the bundle installs
  --compatible MODEL     a device model it may be installed on (repeatable), e.g. raspberrypi4-64
  --payload NAME=FILE    an image for slot partition NAME (rootfs, boot), read from FILE (repeatable)
  --compress gzip|none   how chunks are stored (default gzip)
  --security-version N   devices refuse a bundle whose N is lower than theirs (default 0)
  --chunk-size SIZE      image bytes per chunk, e.g. 4M, 512K or 65536 (default 4M, ${MIN_CHUNK_SIZE} to 64M):
                         a download resumes and a corruption is caught at this granularity
  --format 1|2           bundle format (default ${DEFAULT_CREATE_FORMAT}): 2 adds a signed block index and the
                         image compressed in small units, so devices download only the blocks
                         they lack (adaptive updates, piota 0.3 and later); piota 0.1 refuses it
                         (unsupportedFormat, before writing anything): build 1 for such fleets
  --unit-size SIZE       format 2: image bytes per compression unit, the smallest piece a device
                         fetches (default ${DEFAULT_UNIT_SIZE / 1024}K, 4K to ${MAX_UNIT_SIZE / 1024}K)
  --out FILE             the bundle to write (replaced only once complete)
  -h, --help             this help

See docs/bundle-format.md for the layout.`;

/** "4M", "512K", "65536" -> bytes. */
function parseSize(raw: string | undefined, flag = 'chunk-size', fallback = DEFAULT_CHUNK_SIZE, min = MIN_CHUNK_SIZE, max = MAX_CHUNK_SIZE): number {
  if (raw === undefined) return fallback;
  const m = /^(\d+)\s*([KkMm]?)(i?B)?$/.exec(raw);
  const value = m ? Number(m[1]) * (m[2] ? (m[2].toUpperCase() === 'K' ? 1024 : 1024 * 1024) : 1) : NaN;
  if (!(value >= min && value <= max)) {
    throw new UsageError(`piota bundle create: --${flag} must be from ${min} bytes to ${describeBytes(max)}, got '${raw}'`);
  }
  return value;
}

function parseFormat(raw: string | undefined): number {
  if (raw === undefined) return DEFAULT_CREATE_FORMAT;
  const v = Number(raw);
  if (!FORMAT_VERSIONS.includes(v)) throw new UsageError(`piota bundle create: --format must be ${FORMAT_VERSIONS.join(' or ')}, got '${raw}'`);
  return v;
}

function parsePayload(raw: string): { name: string; file: string } {
  const at = raw.indexOf('=');
  if (at <= 0 || at === raw.length - 1) throw new UsageError(`piota bundle create: --payload must be NAME=FILE, got '${raw}'`);
  return { name: raw.slice(0, at), file: raw.slice(at + 1) };
}

function report(made: CreatedBundle): string {
  const m = made.manifest;
  const lines = [
    `created ${made.path}: ${describeBytes(m.bundleSize)}, format ${m.formatVersion}`,
    `  version ${m.version}, security version ${m.securityVersion}, compatible: ${m.compatible.join(', ')}`,
  ];
  for (const p of m.payloads) {
    lines.push(
      `  payload ${p.name}: image ${describeBytes(p.imageSize)} sha256 ${p.imageSha256}`,
      `    ${p.chunkCount} ${p.compression} chunk${p.chunkCount === 1 ? '' : 's'} of up to ${describeBytes(p.chunkSize)}, stored in ${describeBytes(p.storedSize)}`,
    );
    if (p.blocks) lines.push(`    block index ${describeBytes(p.blocks.size)} (${p.blocks.blockSize}-byte blocks, ${p.blocks.unitSize}-byte units)`);
  }
  lines.push(
    made.signedBy.length > 0
      ? `  signed by key ${made.signedBy.join(', ')}`
      : `  unsigned: sign it with piota bundle sign ${made.path} --key KEY`,
  );
  return lines.join('\n') + '\n';
}

export const bundleCreate: Command = {
  path: ['bundle', 'create'],
  help,
  async run(argv) {
    const { values } = parseCommandArgs(this, argv, {
      key: { type: 'string' },
      version: { type: 'string' },
      compatible: { type: 'string', multiple: true },
      payload: { type: 'string', multiple: true },
      compress: { type: 'string' },
      'security-version': { type: 'string' },
      'chunk-size': { type: 'string' },
      format: { type: 'string' },
      'unit-size': { type: 'string' },
      out: { type: 'string' },
    });
    const version = required(this, values, 'version');
    const out = required(this, values, 'out');
    if (!values.compatible?.length) throw new UsageError('piota bundle create: --compatible is required (see --help)');
    if (!values.payload?.length) throw new UsageError('piota bundle create: --payload is required (see --help)');
    const formatVersion = parseFormat(values.format);
    const codecs = compressionsOf(formatVersion);
    const compression = (values.compress ?? 'gzip') as Compression;
    if (!codecs.includes(compression)) {
      throw new UsageError(`piota bundle create: --compress must be ${codecs.join(' or ')} in format ${formatVersion}, got '${values.compress}'`);
    }
    if (formatVersion === 1 && values['unit-size'] !== undefined) throw new UsageError('piota bundle create: --unit-size needs --format 2');
    const unitSize = formatVersion === 1 ? undefined : parseSize(values['unit-size'], 'unit-size', DEFAULT_UNIT_SIZE, 4096, MAX_UNIT_SIZE);
    const securityVersion = integerOption(this, 'security-version', values['security-version'], 0);
    const chunkSize = parseSize(values['chunk-size']);
    const payloads = values.payload.map(parsePayload);
    const made = await asCommandError(async () =>
      createBundle({
        out,
        version,
        compatible: values.compatible!,
        payloads,
        compression,
        securityVersion,
        chunkSize,
        formatVersion,
        unitSize,
        signingKeys: values.key ? [await readKeyFile(values.key, 'private key')] : [],
      }),
    );
    process.stdout.write(report(made));
    return 0;
  },
};
