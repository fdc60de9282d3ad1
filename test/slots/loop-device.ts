import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/**
 * Real loop devices for the tests that need a block device. Returns a reason when they cannot run
 * here (not root, no losetup, no free loop device), so the caller skips with that reason printed.
 */
export function loopDevicesUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'not running as root';
  if (!existsSync('/dev/loop-control')) return 'no /dev/loop-control';
  const probe = spawnSync('losetup', ['-f'], { encoding: 'utf8' });
  if (probe.error) return `losetup not available (${probe.error.message})`;
  if (probe.status !== 0) return `no free loop device (${probe.stderr.trim()})`;
  return undefined;
}

/** Attaches `file`; `partitions` asks the kernel to scan its partition table (losetup -P). */
export function attachLoop(file: string, partitions = false): string {
  return execFileSync('losetup', ['-f', '--show', ...(partitions ? ['-P'] : []), file], { encoding: 'utf8' }).trim();
}

/** A disk image of `size` bytes with an MBR holding one Linux partition from sector 2048 to the end. */
export function mbrDiskImage(size: number): Buffer {
  const disk = Buffer.alloc(size);
  const entry = 446;
  disk[entry + 4] = 0x83;
  disk.writeUInt32LE(2048, entry + 8);
  disk.writeUInt32LE(size / 512 - 2048, entry + 12);
  disk[510] = 0x55;
  disk[511] = 0xaa;
  return disk;
}

export function detachLoop(device: string): void {
  spawnSync('losetup', ['-d', device]);
}
