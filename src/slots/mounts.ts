import { readFile, readdir, realpath, stat } from 'node:fs/promises';
import { deviceNumber, type SlotPartition } from './partition.js';

interface Mount {
  deviceNumber: string;
  mountPoint: string;
  source: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Parses /proc/self/mountinfo (proc(5)): `id parent major:minor root mountpoint opts [tags] - fstype source superopts`. */
export function parseMountinfo(text: string): Mount[] {
  const mounts: Mount[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const fields = line.split(' ');
    const dash = fields.indexOf('-');
    if (fields.length < 5 || dash < 0) continue;
    mounts.push({ deviceNumber: fields[2], mountPoint: unescape(fields[4]), source: unescape(fields[dash + 2] ?? '') });
  }
  return mounts;
}

async function readMounts(): Promise<Mount[]> {
  return parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'));
}

async function canonical(path: string): Promise<string> {
  try {
    return await realpath(path);
  } catch {
    return path;
  }
}

/**
 * Where `partition` is mounted, or undefined. A block device matches by device number or by its
 * name as the mount source, and a whole disk also when one of its partitions is mounted (a slot
 * configured as /dev/mmcblk0 instead of /dev/mmcblk0p3 must not overwrite the running system);
 * a regular file matches when a loop device backed by it is mounted
 * (`mount -o loop slot.img`), since writing under a mounted filesystem corrupts it just the same.
 */
export async function mountPointOf(partition: SlotPartition): Promise<string | undefined> {
  const mounts = await readMounts();
  const path = await canonical(partition.path);
  if (partition.kind === 'block') {
    const hit = mounts.find((m) => m.deviceNumber === partition.deviceNumber || m.source === path || m.source === partition.path);
    if (hit) return hit.mountPoint;
    const children = await partitionsOf(partition.deviceNumber!);
    const childHit = mounts.find((m) => children.includes(m.deviceNumber));
    if (childHit) return `${childHit.mountPoint} (a partition of this disk)`;
    return (await isActiveSwap(path)) ? '[swap]' : undefined;
  }
  for (const loop of await loopDevicesBackedBy(path)) {
    const hit = mounts.find((m) => m.deviceNumber === loop.deviceNumber);
    if (hit) return hit.mountPoint;
  }
  return undefined;
}

/** Device numbers of the partitions of a whole disk, from sysfs (none for a partition). */
async function partitionsOf(dev: string): Promise<string[]> {
  const base = `/sys/dev/block/${dev}`;
  const entries = await readdir(base).catch(() => [] as string[]);
  const found: string[] = [];
  for (const entry of entries) {
    const child = await readFile(`${base}/${entry}/dev`, 'utf8').catch(() => undefined);
    const isPartition = await stat(`${base}/${entry}/partition`).then(() => true, () => false);
    if (child && isPartition) found.push(child.trim());
  }
  return found;
}

async function isActiveSwap(path: string): Promise<boolean> {
  try {
    const lines = (await readFile('/proc/swaps', 'utf8')).split('\n').slice(1);
    return lines.some((l) => l.split(/\s+/)[0] === path);
  } catch {
    return false;
  }
}

/** Loop devices (from sysfs) whose backing file is `path`. */
async function loopDevicesBackedBy(path: string): Promise<{ name: string; deviceNumber: string }[]> {
  let names: string[];
  try {
    names = (await readdir('/sys/block')).filter((n) => n.startsWith('loop'));
  } catch {
    return [];
  }
  const found: { name: string; deviceNumber: string }[] = [];
  for (const name of names) {
    let backing: string;
    try {
      backing = (await readFile(`/sys/block/${name}/loop/backing_file`, 'utf8')).trim();
    } catch {
      continue; // not attached
    }
    if (backing !== path) continue;
    try {
      const dev = (await readFile(`/sys/block/${name}/dev`, 'utf8')).trim();
      found.push({ name, deviceNumber: dev });
    } catch {
      const st = await stat(`/dev/${name}`, { bigint: true }).catch(() => undefined);
      if (st) found.push({ name, deviceNumber: deviceNumber(st.rdev) });
    }
  }
  return found;
}
