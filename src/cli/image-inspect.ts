import { ImageError } from '../image/image-error.js';
import { inspectImage, type InspectReport } from '../image/inspect.js';
import { describeBytes } from './bundle-shared.js';
import { CommandError, parseCommandArgs, type Command } from './command.js';

const help = `Usage: piota image inspect IMAGE [--json]

Reads an image (never writes it; no root needed) and prints its partitions, the slots, what
autoboot.txt says, the piota version and config inside, and what is wrong with it: a slot's
command line or fstab naming the other slot's root, the first-boot resize still enabled, a state
directory outside the data partition, a missing trusted key, no Node.js 20, units not enabled.

Options:
  --json      one JSON object (docs/image.md, "inspect --json")
  -h, --help  this help

Exit: 0 clean, 1 problems found (listed), 2 unreadable (not an MBR image, or no such file).`;

function text(r: InspectReport): string {
  const lines = [`${r.image}: disk ${r.diskId}, ${r.layout === 'ab' ? 'A/B tryboot layout' : 'not the A/B layout'}`];
  for (const p of r.partitions) lines.push(`  ${p.number}  type ${p.type}  ${describeBytes(p.size).padStart(10)}  PARTUUID=${p.partUuid}${p.role ? `  ${p.role}` : ''}`);
  if (r.autoboot) lines.push(`autoboot.txt: boots partition ${r.autoboot.committed}${r.autoboot.tryboot !== null ? `, tryboot partition ${r.autoboot.tryboot}` : ''}`);
  for (const [name, s] of Object.entries(r.slots)) {
    lines.push(
      `slot ${name}: boot ${s.bootPartition} -> ${s.cmdlineFile ?? '?'} root=${s.root ?? '?'}; fstab / ${s.fstabRoot ?? '?'}, /boot/firmware ${s.fstabBoot ?? '?'}`,
      `  piota ${s.piotaVersion ?? 'not installed'}, release ${s.release ?? 'none (/etc/piota-release)'}, Node.js ${s.node ?? 'none'}, enabled: ${s.enabledUnits.join(', ') || 'nothing'}`,
    );
  }
  if (r.config) {
    const c = r.config as { model?: string; stateDir?: string; trustedKeys?: string[]; hubCaFile?: string | null; downloadCaFile?: string | null };
    lines.push(`config: model ${c.model ?? '?'}, stateDir ${c.stateDir ?? '?'}, trustedKeys ${(c.trustedKeys ?? []).join(' ') || 'none'}${c.hubCaFile ? `, hubCaFile ${c.hubCaFile}` : ''}${c.downloadCaFile ? `, downloadCaFile ${c.downloadCaFile}` : ''}`);
  }
  if (r.layout === 'ab') lines.push(r.connectionStringBaked ? 'connection string: baked in (a single-device image)' : 'connection string: none (provisioned per device)');
  lines.push(r.problems.length === 0 ? 'problems: none' : `problems (${r.problems.length}):`);
  for (const p of r.problems) lines.push(`  - ${p}`);
  return lines.join('\n') + '\n';
}

export const imageInspectCommand: Command = {
  path: ['image', 'inspect'],
  help,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(this, argv, { json: { type: 'boolean' } }, { min: 1, max: 1 });
    let report: InspectReport;
    try {
      report = await inspectImage(positionals[0]!);
    } catch (err) {
      if (err instanceof ImageError) throw new CommandError(`piota image inspect: ${err.message}`, 2);
      throw err;
    }
    process.stdout.write(values.json ? JSON.stringify(report, null, 2) + '\n' : text(report));
    return report.problems.length === 0 ? 0 : 1;
  },
};
