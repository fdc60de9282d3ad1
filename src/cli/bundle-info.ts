import { readBundleFileHeader, type BundleFileHeader } from '../bundle/inspect.js';
import { parseCommandArgs, type Command } from './command.js';
import { asCommandError, describeBytes } from './bundle-shared.js';

const help = `Usage: piota bundle info FILE [--json]

Prints a bundle's manifest: version, security version, compatible models, signing key ids and each
payload with its chunks. Nothing is verified here (use piota bundle verify).

Options:
  --json      the manifest as one JSON object (chunks included)
  -h, --help  this help`;

function asJson(h: BundleFileHeader): unknown {
  const m = h.manifest;
  return {
    formatVersion: m.formatVersion,
    version: m.version,
    securityVersion: m.securityVersion,
    compatible: m.compatible,
    createdAt: m.createdAt,
    headerLength: m.headerLength,
    chunksEnd: m.chunksEnd,
    bundleSize: m.bundleSize,
    fileSize: h.fileSize,
    signatures: h.signatures.map((s) => ({ keyId: s.keyId })),
    payloads: m.payloads,
    chunks: m.chunks,
  };
}

function asText(file: string, h: BundleFileHeader): string {
  const m = h.manifest;
  const lines = [
    `${file}: piota bundle format ${m.formatVersion}, ${describeBytes(m.bundleSize)} (not verified: use piota bundle verify)`,
    `  version           ${m.version}`,
    `  security version  ${m.securityVersion}`,
    `  compatible        ${m.compatible.join(', ')}`,
    `  created           ${m.createdAt}`,
    `  signed by         ${h.signatures.length > 0 ? h.signatures.map((s) => `key ${s.keyId}`).join(', ') : 'nobody (unsigned)'}`,
  ];
  if (h.fileSize !== m.bundleSize) lines.push(`  WARNING: the file holds ${h.fileSize} bytes, the manifest describes ${m.bundleSize}`);
  for (const p of m.payloads) {
    lines.push(
      `  payload ${p.name}`,
      `    image       ${describeBytes(p.imageSize)}, sha256 ${p.imageSha256}`,
      `    stored      ${describeBytes(p.storedSize)} in ${p.chunkCount} ${p.compression} chunk${p.chunkCount === 1 ? '' : 's'} of up to ${describeBytes(p.chunkSize)}`,
    );
    if (p.blocks) lines.push(`    block index ${describeBytes(p.blocks.size)} at ${p.blocks.offset}: ${p.blocks.blockSize}-byte blocks, ${p.blocks.unitSize}-byte units`);
  }
  return lines.join('\n') + '\n';
}

export const bundleInfo: Command = {
  path: ['bundle', 'info'],
  help,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(this, argv, { json: { type: 'boolean' } }, { min: 1, max: 1 });
    const file = positionals[0];
    const header = await asCommandError(() => readBundleFileHeader(file), file);
    process.stdout.write(values.json ? JSON.stringify(asJson(header), null, 2) + '\n' : asText(file, header));
    return 0;
  },
};
