import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ImageError } from './image-error.js';
import { runTool } from './run-tool.js';

/** The fleet config flags of scripts/install.sh that convert passes through as they are. */
export interface FleetFlags {
  model: string;
  trustedKeys: string[];
  slotA?: string;
  slotB?: string;
  stateDir?: string;
  hubCa?: string;
  downloadCa?: string;
  maintenanceWindow?: string;
  connectionString?: string;
}

/**
 * Writes /etc/piota/config.json, the trusted keys, the CA files and (when given) the connection
 * string into the root mounted at `root`, with the installer the package carries
 * (/usr/lib/piota/install.sh --root): one implementation of the config rules, checked by the
 * package's own `piota config check`. It runs on the host's bash and Node.js, reading the
 * package's JavaScript: nothing of the image is executed. The data partition must be mounted at
 * `root`/data, where install.sh checks that the state directory is not on the root file system.
 */
export async function writeFleetConfig(root: string, f: FleetFlags, log: (line: string) => void): Promise<void> {
  const installer = join(root, 'usr/lib/piota/install.sh');
  if (!existsSync(installer)) throw new ImageError('refused', `the package has no /usr/lib/piota/install.sh: not a piota package this converter knows`);
  const args = [installer, '--root', root, '--no-start', '--no-enable', '--model', f.model, '--boot-backend', 'tryboot', '--boot-partitions', '2,3'];
  args.push('--slot-a', f.slotA ?? 'boot=/dev/mmcblk0p2,rootfs=/dev/mmcblk0p5');
  args.push('--slot-b', f.slotB ?? 'boot=/dev/mmcblk0p3,rootfs=/dev/mmcblk0p6');
  for (const k of f.trustedKeys) args.push('--trusted-key', k);
  if (f.stateDir) args.push('--state-dir', f.stateDir);
  if (f.hubCa) args.push('--hub-ca', f.hubCa);
  if (f.downloadCa) args.push('--download-ca', f.downloadCa);
  if (f.maintenanceWindow) args.push('--maintenance-window', f.maintenanceWindow);
  if (f.connectionString !== undefined) args.push('--connection-string', '-');
  const r = await runTool('bash', args, { input: f.connectionString ?? '', allowFailure: true });
  const said = (r.stdout.toString('utf8') + r.stderr)
    .split('\n')
    .filter((l) => l.startsWith('install.sh: '));
  if (r.code !== 0) {
    const why = r.stderr.trim().split('\n').filter(Boolean).pop() ?? `exit ${r.code}`;
    throw new ImageError('refused', `fleet config refused: ${why.replaceAll(root, '')}`);
  }
  for (const l of said) log(`  ${l.replaceAll(root, '')}`);
}
