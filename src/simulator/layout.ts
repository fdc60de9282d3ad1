import { mkdir, open, stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import type { Slot } from '../boot/backend.js';
import { writeAutoboot } from '../boot/autoboot-file.js';

/** Where a simulated Pi keeps its "SD card" and its firmware's outputs, all under one directory. */
export interface SimLayout {
  dir: string;
  slots: Record<Slot, { boot: string; rootfs: string }>;
  /** The partition numbers autoboot.txt and the device tree use, as on a Pi tryboot layout. */
  partitions: Record<Slot, number>;
  autoboot: string;
  deviceTreeDir: string;
  stateDir: string;
  runtimeDir: string;
  configFile: string;
  simJson: string;
  socket: string;
  daemonLog: string;
}

export function simLayout(dir: string): SimLayout {
  const d = resolve(dir);
  const slot = (s: Slot) => ({ boot: join(d, 'slots', `${s}-boot.img`), rootfs: join(d, 'slots', `${s}-rootfs.img`) });
  return {
    dir: d,
    slots: { A: slot('A'), B: slot('B') },
    partitions: { A: 2, B: 3 },
    autoboot: join(d, 'bootconfig', 'autoboot.txt'),
    deviceTreeDir: join(d, 'device-tree', 'chosen', 'bootloader'),
    stateDir: join(d, 'data'),
    runtimeDir: join(d, 'run'),
    configFile: join(d, 'config.json'),
    simJson: join(d, 'sim.json'),
    socket: join(d, 'sim.sock'),
    daemonLog: join(d, 'daemon.log'),
  };
}

/** What the daemon config says, where --daemon-config may have moved things from the default layout. */
export interface LayoutTargets {
  slots: Record<Slot, { boot: string; rootfs: string }>;
  bootPartitions: Record<Slot, number>;
  autobootFile: string;
  deviceTreeDir: string;
  runtimeDir: string;
}

function defaultTargets(layout: SimLayout): LayoutTargets {
  const { slots, deviceTreeDir, runtimeDir } = layout;
  return { slots, deviceTreeDir, runtimeDir, autobootFile: layout.autoboot, bootPartitions: layout.partitions };
}

function inside(dir: string, path: string): boolean {
  const rel = relative(dir, path);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
}

/**
 * Creates what is missing: sparse slot files of `slotSize` bytes, an autoboot.txt that boots slot A,
 * and the directories. An existing layout is kept as it is (running `piota simulate` again on the
 * same directory powers the same Pi on again, with its slots, boot config and state). Only paths
 * inside the simulator's directory are created: slots elsewhere (loop devices) must exist.
 */
export async function createLayout(layout: SimLayout, slotSize: number, targets: LayoutTargets = defaultTargets(layout)): Promise<void> {
  for (const d of [dirname(targets.autobootFile), targets.deviceTreeDir, targets.runtimeDir]) {
    if (inside(layout.dir, d)) await mkdir(d, { recursive: true });
  }
  await mkdir(layout.stateDir, { recursive: true, mode: 0o700 });
  for (const slot of Object.values(targets.slots)) {
    for (const path of [slot.boot, slot.rootfs]) {
      if (!inside(layout.dir, path)) continue;
      await mkdir(dirname(path), { recursive: true });
      const fh = await open(path, 'wx').catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'EEXIST') return undefined;
        throw err;
      });
      if (!fh) continue;
      try {
        await fh.truncate(slotSize); // sparse: a 64M slot costs nothing until written
      } finally {
        await fh.close();
      }
    }
  }
  if (inside(layout.dir, targets.autobootFile) && !(await stat(targets.autobootFile).catch(() => undefined))) {
    const a = targets.bootPartitions.A;
    await writeAutoboot(targets.autobootFile, { bootPartition: a, trybootPartition: a });
  }
}
