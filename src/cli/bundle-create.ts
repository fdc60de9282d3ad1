import { createBundle, type CreatedBundle } from '../bundle/create.js';
import { DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE } from '../bundle/format.js';
import { COMPRESSIONS, type Compression } from '../bundle/manifest.js';
import { UsageError, integerOption, parseCommandArgs, required, type Command } from './command.js';
import { asCommandError, describeBytes, readKeyFile } from './bundle-shared.js';

const help = `Usage: piota bundle create [--key KEY] --version V --compatible MODEL [--compatible ...]
                           --payload NAME=FILE [--payload ...] [--compress gzip|none]
                           [--security-version N] [--chunk-size SIZE] --out FILE

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
  --out FILE             the bundle to write (replaced only once complete)
  -h, --help             this help

See docs/bundle-format.md for the layout.`;

/** "4M", "512K", "65536" -> bytes. */
function parseSize(raw: string | undefined): number {
  if (raw === undefined) return DEFAULT_CHUNK_SIZE;
  const m = /^(\d+)\s*([KkMm]?)(i?B)?$/.exec(raw);
  const value = m ? Number(m[1]) * (m[2] ? (m[2].toUpperCase() === 'K' ? 1024 : 1024 * 1024) : 1) : NaN;
  if (!(value >= MIN_CHUNK_SIZE && value <= MAX_CHUNK_SIZE)) {
    throw new UsageError(`piota bundle create: --chunk-size must be from ${MIN_CHUNK_SIZE} bytes to 64M, got '${raw}'`);
  }
  return value;
}

function parsePayload(raw: string): { name: string; file: string } {
  const at = raw.indexOf('=');
  if (at <= 0 || at === raw.length - 1) throw new UsageError(`piota bundle create: --payload must be NAME=FILE, got '${raw}'`);
  return { name: raw.slice(0, at), file: raw.slice(at + 1) };
}

function report(made: CreatedBundle): string {
  const m = made.manifest;
  const lines = [
    `created ${made.path}: ${describeBytes(m.bundleSize)}`,
    `  version ${m.version}, security version ${m.securityVersion}, compatible: ${m.compatible.join(', ')}`,
  ];
  for (const p of m.payloads) {
    lines.push(
      `  payload ${p.name}: image ${describeBytes(p.imageSize)} sha256 ${p.imageSha256}`,
      `    ${p.chunkCount} ${p.compression} chunk${p.chunkCount === 1 ? '' : 's'} of up to ${describeBytes(p.chunkSize)}, stored in ${describeBytes(p.storedSize)}`,
    );
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
  summary: 'make a signed (or unsigned) firmware bundle from image files',
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
      out: { type: 'string' },
    });
    const version = required(this, values, 'version');
    const out = required(this, values, 'out');
    if (!values.compatible?.length) throw new UsageError('piota bundle create: --compatible is required (see --help)');
    if (!values.payload?.length) throw new UsageError('piota bundle create: --payload is required (see --help)');
    const compression = (values.compress ?? 'gzip') as Compression;
    if (!COMPRESSIONS.includes(compression)) {
      throw new UsageError(`piota bundle create: --compress must be ${COMPRESSIONS.join(' or ')}, got '${values.compress}'`);
    }
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
        signingKeys: values.key ? [await readKeyFile(values.key, 'private key')] : [],
      }),
    );
    process.stdout.write(report(made));
    return 0;
  },
};
