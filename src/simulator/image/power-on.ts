import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { runHost } from './host-command.js';
import type { ImageSimLayout } from './layout.js';
import { attachPartitions, detachAll, loopDevicesOf } from './loop-devices.js';
import { checkPiLayout, PI_LAYOUT, readPartitions } from './partitions.js';
import { putFileOnFat } from './fat-mirror.js';
import { DROPPED_CONNECTION_STRING } from '../../provision/connection-string-drop.js';

/** The host tools the rig drives; each missing one is named with its Debian package. */
const TOOLS: Record<string, string> = { 'systemd-nspawn': 'systemd-container', losetup: 'mount', sfdisk: 'fdisk', mcopy: 'mtools', mount: 'mount' };

export async function checkHost(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('piota simulate --image needs root (loop devices, mounts, systemd-nspawn)');
  const missing: string[] = [];
  for (const [tool, pkg] of Object.entries(TOOLS)) {
    const found = await runHost('sh', ['-c', `command -v ${tool}`]).then(() => true, () => false);
    if (!found) missing.push(`${tool} (apt install ${pkg})`);
  }
  if (missing.length > 0) throw new Error(`piota simulate --image: missing ${missing.join(', ')}`);
}

/** Copies the image into DIR on the first run (a stream copy); later runs use DIR's copy. */
export async function ensureImageCopy(layout: ImageSimLayout, source: string | undefined): Promise<'copied' | 'kept'> {
  if (existsSync(layout.image)) return 'kept';
  if (!source) throw new Error(`${layout.image} does not exist yet: give --image IMG for the first run`);
  if (!existsSync(source)) throw new Error(`--image ${source}: no such file`);
  await mkdir(layout.dir, { recursive: true });
  const partial = `${layout.image}.partial`;
  // cp keeps the holes of a sparse image (and clones it where the file system can): a card image
  // is mostly empty, and a byte copy would write all of it.
  await runHost('cp', ['--sparse=always', '--reflink=auto', source, partial]);
  await rename(partial, layout.image); // never a half-copied card
  return 'copied';
}

async function isMountPoint(path: string): Promise<boolean> {
  const mounts = await readFile('/proc/self/mountinfo', 'utf8');
  return mounts.split('\n').some((l) => l.split(' ')[4] === path);
}

/**
 * What a rig that was itself SIGKILLed left behind: its container (the pid sim.json names, if
 * that process's root is still DIR's root mount), its mounts and its loop devices.
 */
export async function cleanUpLeftovers(layout: ImageSimLayout, log: (line: string) => void): Promise<void> {
  const pid = await readFile(layout.simJson, 'utf8').then((s) => (JSON.parse(s) as { containerPid?: unknown }).containerPid, () => undefined);
  if (typeof pid === 'number' && pid > 1) {
    const root = await runHost('readlink', [`/proc/${pid}/root`]).then((s) => s.trim(), () => '');
    if (root === layout.rootMount) {
      log(`killing the container left running by an earlier run (pid ${pid})`);
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
      for (let i = 0; i < 100 && existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 50));
    }
  }
  for (const m of [layout.rootMount, layout.dataMount]) {
    if (await isMountPoint(m)) await runHost('umount', [m]);
  }
  await detachAll(await loopDevicesOf(layout.image));
}

export interface PoweredOn {
  devices: Map<number, string>;
  diskId: string | undefined;
  /** Unmounts the data partition and detaches the loop devices. */
  release(): Promise<void>;
}

/** Loop devices for the image's partitions and the data partition mounted, for the whole run. */
export async function attachImage(layout: ImageSimLayout): Promise<PoweredOn> {
  const { diskId, partitions } = await readPartitions(layout.image);
  checkPiLayout(layout.image, partitions);
  const devices = await attachPartitions(layout.image, partitions);
  const release = async () => {
    if (await isMountPoint(layout.dataMount)) await runHost('umount', [layout.dataMount]).catch(() => undefined);
    await detachAll([...devices.values()]);
  };
  try {
    await mkdir(layout.dataMount, { recursive: true });
    await runHost('mount', ['-t', 'ext4', devices.get(PI_LAYOUT.data)!, layout.dataMount]);
  } catch (err) {
    await release();
    throw err;
  }
  return { devices, diskId, release };
}

/**
 * Hands the device its connection string the way a user would: the file on the bootconfig
 * partition, which piota-provision.service moves at the next boot. Only when the data partition
 * does not already hold this very string (a later run with the hub on another port re-provisions).
 */
export async function dropConnectionString(layout: ImageSimLayout, devices: Map<number, string>, connectionString: string): Promise<boolean> {
  const stored = await readFile(join(layout.dataMount, 'piota', 'connection-string'), 'utf8').then((s) => s.trim(), () => undefined);
  if (stored === connectionString.trim()) return false;
  const tmp = join(layout.rigDir, DROPPED_CONNECTION_STRING);
  await mkdir(layout.rigDir, { recursive: true });
  await writeFile(tmp, connectionString.trim() + '\n', { mode: 0o600 });
  try {
    await putFileOnFat(devices.get(PI_LAYOUT.bootconfig)!, DROPPED_CONNECTION_STRING, tmp);
  } finally {
    await rm(tmp, { force: true });
  }
  return true;
}
