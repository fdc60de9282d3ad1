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

export function attachLoop(file: string): string {
  return execFileSync('losetup', ['-f', '--show', file], { encoding: 'utf8' }).trim();
}

export function detachLoop(device: string): void {
  spawnSync('losetup', ['-d', device]);
}
