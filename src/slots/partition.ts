import { stat, readFile, realpath } from 'node:fs/promises';
import { basename } from 'node:path';
import { SlotError } from './slot-error.js';

/** A slot partition: a block device on a Pi, a regular file in the simulator and in tests. */
export interface SlotPartition {
  path: string;
  /** Bytes available for an image. */
  size: number;
  kind: 'file' | 'block';
  /** major:minor of a block device, as /proc/self/mountinfo and /sys/dev/block spell it. */
  deviceNumber?: string;
}

/** Linux's encoding of dev_t (glibc's gnu_dev_major/minor), on a bigint st_rdev. */
export function deviceNumber(rdev: bigint): string {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

/** Looks at `path` and says what it is and how big; refuses anything but a regular file or block device. */
export async function describePartition(path: string): Promise<SlotPartition> {
  let st;
  try {
    st = await stat(path, { bigint: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new SlotError('notFound', path, 'no such slot partition');
    throw new SlotError('io', path, `cannot stat the slot partition (${(err as Error).message})`);
  }
  if (st.isFile()) return { path, size: Number(st.size), kind: 'file' };
  if (!st.isBlockDevice()) throw new SlotError('notPartition', path, 'a slot partition must be a regular file or a block device');
  const dev = deviceNumber(st.rdev);
  return { path, size: await blockDeviceSize(path, dev), kind: 'block', deviceNumber: dev };
}

export async function partitionSize(path: string): Promise<number> {
  return (await describePartition(path)).size;
}

/**
 * A block device's size from sysfs: `size` counts 512-byte sectors whatever the logical block size
 * (Node has no BLKGETSIZE64 ioctl, and fstat reports 0 for block devices). Looked up by device
 * number, so /dev/disk/by-partuuid/... links work, with /sys/class/block/<name> as a second try.
 */
async function blockDeviceSize(path: string, dev: string): Promise<number> {
  const candidates = [`/sys/dev/block/${dev}/size`];
  try {
    candidates.push(`/sys/class/block/${basename(await realpath(path))}/size`);
  } catch {
    // realpath failing on a device that stat just saw is a race; the first candidate still stands.
  }
  for (const file of candidates) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch {
      continue;
    }
    if (!/^\d+\s*$/.test(text)) throw new SlotError('io', path, `${file} holds '${text.trim()}', not a sector count`);
    return Number(text.trim()) * 512;
  }
  throw new SlotError('io', path, `cannot find the size of block device ${dev} in sysfs (${candidates.join(', ')})`);
}
