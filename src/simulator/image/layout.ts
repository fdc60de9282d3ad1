import { join, resolve } from 'node:path';

/** Where `piota simulate --image` keeps a Pi in a box, all under DIR (docs/simulator.md). */
export interface ImageSimLayout {
  dir: string;
  /** The Pi's "SD card": the image, copied here on the first run. */
  image: string;
  simJson: string;
  /** The container's console (systemd's boot and shutdown messages), appended across boots. */
  consoleLog: string;
  /** The booted slot's root file system is mounted here (the container's /). */
  rootMount: string;
  /** The data partition, mounted for the whole run (the container's /data). */
  dataMount: string;
  /** The bootconfig partition's files (the container's /boot/bootconfig), see fat-mirror.ts. */
  bootconfig: string;
  /** Stands in for /sys/firmware: devicetree/base/chosen/bootloader/{partition,tryboot}. */
  firmwareDir: string;
  deviceTreeDir: string;
  /** The rig's own files: the reboot-argument recorder unit and what it records. */
  rigDir: string;
  rebootOut: string;
}

export function imageSimLayout(dir: string): ImageSimLayout {
  const d = resolve(dir);
  const firmwareDir = join(d, 'firmware');
  return {
    dir: d,
    image: join(d, 'pi.img'),
    simJson: join(d, 'sim.json'),
    consoleLog: join(d, 'console.log'),
    rootMount: join(d, 'mnt', 'root'),
    dataMount: join(d, 'mnt', 'data'),
    bootconfig: join(d, 'bootconfig'),
    firmwareDir,
    deviceTreeDir: join(firmwareDir, 'devicetree', 'base', 'chosen', 'bootloader'),
    rigDir: join(d, 'rig'),
    rebootOut: join(d, 'rig', 'out'),
  };
}
