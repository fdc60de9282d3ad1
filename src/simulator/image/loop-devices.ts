import { runHost } from './host-command.js';
import type { ImagePartition } from './partitions.js';

/**
 * One loop device per partition, with --offset/--sizelimit: this kernel does not parse partition
 * tables (losetup -P gives no loopNpM), and a loop device per partition is also what the
 * container's /dev/mmcblk0pN are bound to.
 */
export async function attachPartitions(image: string, partitions: readonly ImagePartition[]): Promise<Map<number, string>> {
  const devices = new Map<number, string>();
  try {
    for (const p of partitions) {
      if (p.type === '5' || p.type === 'f' || p.type === '85') continue; // an extended partition holds the others
      const dev = (await runHost('losetup', ['--find', '--show', '--offset', String(p.offset), '--sizelimit', String(p.size), image])).trim();
      devices.set(p.number, dev);
    }
  } catch (err) {
    await detachAll([...devices.values()]);
    throw err;
  }
  return devices;
}

export async function detachAll(devices: readonly string[]): Promise<void> {
  for (const dev of devices) await runHost('losetup', ['--detach', dev]).catch(() => undefined);
}

/** Loop devices still backed by `image` (left by a rig that was itself killed). */
export async function loopDevicesOf(image: string): Promise<string[]> {
  const out = await runHost('losetup', ['--associated', image, '--noheadings', '--output', 'NAME']).catch(() => '');
  return out.split('\n').map((l) => l.trim()).filter(Boolean);
}
