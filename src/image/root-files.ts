import { lstat, mkdir, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileDurably } from '../os/durable-file.js';
import { dirReader, type RootReader } from './root-reader.js';

/**
 * A slot's root file system, edited offline (mounted at `root` on the host): its fstab and the
 * removal of Raspberry Pi OS's first-boot resize. Pure path work, no binary of the image runs.
 */

export interface SlotMounts {
  /** PARTUUIDs of this slot's root and boot partitions, the bootconfig and data partitions. */
  root: string;
  boot: string;
  bootconfig: string;
  data: string;
}

/** Mount points this file owns in fstab: any earlier line for them is replaced. */
const OWNED = new Set(['/', '/boot/firmware', '/boot', '/boot/bootconfig', '/data', '/var/log/journal']);

/**
 * The slot's /etc/fstab from the image's: its own root and boot partition (at /boot/firmware, as
 * Raspberry Pi OS mounts it), the bootconfig and data partitions shared by both slots, and the
 * journal kept on the data partition; other lines kept, without `x-systemd.growfs` (a first-boot
 * growth of a partition that is not the last).
 */
export function slotFstab(original: string, m: SlotMounts): string {
  const kept: string[] = [];
  for (const line of original.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (line.trim() !== '' && !line.trim().startsWith('#') && OWNED.has(fields[1] ?? '')) continue;
    kept.push(
      fields.length >= 4 && !line.trim().startsWith('#')
        ? line.replace(fields[3]!, fields[3]!.split(',').filter((o) => o !== 'x-systemd.growfs').join(',') || 'defaults')
        : line,
    );
  }
  while (kept.length > 0 && kept[kept.length - 1] === '') kept.pop();
  return [
    ...kept,
    '# A/B slots (piota image convert): this slot\'s root and boot partition, and the partitions both slots share',
    `PARTUUID=${m.root}  /                 ext4  defaults,noatime  0 1`,
    `PARTUUID=${m.boot}  /boot/firmware    vfat  defaults,noatime  0 2`,
    `PARTUUID=${m.bootconfig}  /boot/bootconfig  vfat  defaults,noatime  0 2`,
    `PARTUUID=${m.data}  /data             ext4  defaults,noatime  0 2`,
    '/data/journal  /var/log/journal  none  bind,nofail,x-systemd.requires-mounts-for=/data  0 0',
    '',
  ].join('\n');
}

/** What in a root file system would resize it at first boot (absolute paths inside it). */
export async function findResizeHooks(root: RootReader): Promise<string[]> {
  const found: string[] = [];
  const etc = '/etc/systemd/system';
  for (const dir of await root.list(etc)) {
    if (!dir.endsWith('.wants') && !dir.endsWith('.requires')) continue;
    if ((await root.list(`${etc}/${dir}`)).includes('rpi-resize.service')) found.push(`${etc}/${dir}/rpi-resize.service`);
  }
  // Before trixie: a SysV script that deletes itself after one run.
  if ((await root.read('/etc/init.d/resize2fs_once')) !== undefined) found.push('/etc/init.d/resize2fs_once');
  for (const rc of await root.list('/etc')) {
    if (!/^rc[0-6S]\.d$/.test(rc)) continue;
    for (const name of await root.list(`/etc/${rc}`)) if (/^[SK]\d\dresize2fs_once$/.test(name)) found.push(`/etc/${rc}/${name}`);
  }
  return found;
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

/**
 * Removes the first-boot resize: the enabling links and scripts found by findResizeHooks, and masks
 * rpi-resize.service, so that an upgrade of raspberrypi-sys-mods does not enable it again.
 * Returns what was removed.
 */
export async function removeResizeHooks(root: string): Promise<string[]> {
  const hooks = await findResizeHooks(dirReader(root));
  for (const h of hooks) await rm(join(root, h), { force: true });
  const unit = ['usr/lib/systemd/system/rpi-resize.service', 'lib/systemd/system/rpi-resize.service'];
  if ((await Promise.all(unit.map((u) => exists(join(root, u))))).some(Boolean)) {
    const mask = join(root, 'etc/systemd/system/rpi-resize.service');
    await rm(mask, { force: true });
    await mkdir(join(root, 'etc/systemd/system'), { recursive: true });
    await symlink('/dev/null', mask);
    hooks.push('rpi-resize.service (masked)');
  }
  return hooks;
}

/** The hardware watchdog settings of docs/raspberry-pi.md section 4. */
export const WATCHDOG_CONF = `# piota image convert: a hung boot (a bad trial) resets the board (docs/raspberry-pi.md, section 4)
[Manager]
RuntimeWatchdogSec=15s
RebootWatchdogSec=2min
`;

export async function writeWatchdogConf(root: string): Promise<void> {
  await writeFileDurably(join(root, 'etc/systemd/system.conf.d/watchdog.conf'), WATCHDOG_CONF, { mkdirs: true });
}
