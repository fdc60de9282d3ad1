import { mkdir, open, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
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

/**
 * Creates what is missing: sparse slot files of `slotSize` bytes, an autoboot.txt that boots slot A,
 * and the directories. An existing layout is kept as it is (running `piota simulate` again on the
 * same directory powers the same Pi on again, with its slots, boot config and state).
 */
export async function createLayout(layout: SimLayout, slotSize: number): Promise<void> {
  for (const d of [join(layout.dir, 'slots'), join(layout.dir, 'bootconfig'), layout.deviceTreeDir, layout.runtimeDir]) {
    await mkdir(d, { recursive: true });
  }
  await mkdir(layout.stateDir, { recursive: true, mode: 0o700 });
  for (const slot of Object.values(layout.slots)) {
    for (const path of [slot.boot, slot.rootfs]) {
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
  if (!(await stat(layout.autoboot).catch(() => undefined))) {
    await writeAutoboot(layout.autoboot, { bootPartition: layout.partitions.A, trybootPartition: layout.partitions.A });
  }
}
