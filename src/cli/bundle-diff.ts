import { diffBundles, type DiffReport } from '../adaptive/bundle-diff.js';
import { parseCommandArgs, type Command } from './command.js';
import { asCommandError, describeBytes } from './bundle-shared.js';

const help = `Usage: piota bundle diff OLD NEW [--json]

Predicts what a device running OLD downloads to install NEW with an adaptive update, against a
full download of NEW, from the block indexes of the two bundles (both format 2). Run it before
publishing a release. Nothing is verified here (use piota bundle verify).

Options:
  --json      the prediction as one JSON object
  -h, --help  this help

See docs/adaptive-updates.md.`;

function percent(share: number): string {
  return `${(share * 100).toFixed(2)} %`;
}

function asText(r: DiffReport): string {
  const lines = [
    `a device running ${r.old.version} (${r.old.file}) installing ${r.new.version} (${r.new.file}):`,
    `  full download      ${describeBytes(r.fullBytes)}`,
    `  adaptive download  ${describeBytes(r.adaptiveBytes)}, ${percent(r.share)} of the full download`,
  ];
  for (const p of r.payloads) {
    lines.push(
      `  payload ${p.name}: block index ${describeBytes(p.indexBytes)}, fetched ${describeBytes(p.fetchBytes)} in ${p.requests} range request${p.requests === 1 ? '' : 's'}`,
      `    reused ${describeBytes(p.reusedBytes)} from the slot, ${describeBytes(p.zeroBytes)} of zeros, of an image of ${describeBytes(p.imageSize)}`,
    );
  }
  return lines.join('\n') + '\n';
}

export const bundleDiff: Command = {
  path: ['bundle', 'diff'],
  help,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(this, argv, { json: { type: 'boolean' } }, { min: 2, max: 2 });
    const [oldFile, newFile] = positionals;
    const report = await asCommandError(() => diffBundles(oldFile, newFile));
    process.stdout.write(values.json ? JSON.stringify(report, null, 2) + '\n' : asText(report));
    return 0;
  },
};
