import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SLOTS, type Slot } from '../../boot/backend.js';
import { readAutoboot } from '../../boot/autoboot-file.js';
import { encodeBootloaderValue } from '../../boot/device-tree.js';
import { writeFileDurably } from '../../os/durable-file.js';
import { chooseBoot } from '../firmware.js';
import type { BootCause } from '../boot-record.js';
import type { SimState } from '../simulator.js';
import { bootContainer, NSPAWN_REBOOTED, type Bind, type RunningContainer } from './container.js';
import { copyDirectoryToFat, copyFatToDirectory } from './fat-mirror.js';
import { runHost } from './host-command.js';
import type { ImageSimLayout } from './layout.js';
import { partUuid, PI_LAYOUT } from './partitions.js';
import { deviceTreeOverride, IMAGE_CONFIG, SYS_DEVICE_TREE } from './device-tree-override.js';
import { asksForTryboot, RECORDED_FILE, RECORDER_GUEST_DIR, RECORDER_UNIT, recorderUnitText } from './reboot-recorder.js';

/** A drop-in for one of the image's units, bound for every boot (as `systemctl edit --runtime`). */
export interface UnitDropIn {
  unit: string;
  file: string;
}

export interface ImagePiOptions {
  layout: ImageSimLayout;
  /** Loop device of each partition, by partition number. */
  devices: Map<number, string>;
  /** The MBR disk id: each partition also appears at /dev/disk/by-partuuid/, as udev links it. */
  diskId?: string;
  hostname: string;
  dropIns?: readonly UnitDropIn[];
  /** The next trial boot hangs; the watchdog resets the board after watchdogMs. */
  failTrial?: boolean;
  watchdogMs?: number;
  /** How long a powered-off container gets before SIGKILL when the simulation stops. */
  stopGraceMs?: number;
  log?: (line: string) => void;
}

/** DIR/sim.json of `piota simulate --image`: piota simulate's fields (SimState) and the container's. */
export interface ImageSimState extends Omit<SimState, 'daemonPid'> {
  /** Always null: the daemon runs inside the container (systemctl there knows it). */
  daemonPid: null;
  /** The container's PID 1 (its systemd) on the host: SIGKILL of it is a power cut. */
  containerPid: number | null;
  image: string;
  /** Loop device of each partition number; `slots` names the host's loop devices too. */
  devices: Record<string, string>;
  /** Why the current boot happened. */
  cause: BootCause | null;
}

export interface ImagePiExit {
  code: number;
  message?: string;
}

/**
 * The Pi firmware around a real systemd: at each boot it reads autoboot.txt from the bootconfig
 * partition, picks the slot as the firmware does (firmware.ts), publishes partition and tryboot
 * where the kernel publishes the device tree, mounts that slot's root file system and boots it
 * with systemd-nspawn. The container's end says what happened: 133 a reboot (with the argument the
 * recorder unit handed out), 0 a power-off (the simulation ends), anything else a power cut.
 */
export class ImagePi {
  readonly done: Promise<ImagePiExit>;
  private finish!: (exit: ImagePiExit) => void;
  private bootCount = 0;
  private bootedSlot: Slot | null = null;
  private trial = false;
  private cause: BootCause | null = null;
  private containerPid: number | null = null;
  private container: RunningContainer | undefined;
  private failTrial: boolean;
  private stopping = false;
  private wakeHang: (() => void) | undefined;

  constructor(private readonly options: ImagePiOptions) {
    this.failTrial = options.failTrial ?? false;
    this.done = new Promise((resolve) => (this.finish = resolve));
  }

  /** Starts the boot loop; `done` resolves when it ends. */
  start(): void {
    this.run().then(
      (exit) => this.finish(exit),
      (err: unknown) => this.finish({ code: 1, message: (err as Error).message }),
    );
  }

  /** Powers the Pi off (SIGTERM to nspawn: the container's systemd shuts down), SIGKILL after the grace. */
  stop(): Promise<ImagePiExit> {
    if (!this.stopping) {
      this.stopping = true;
      this.wakeHang?.();
      const c = this.container;
      if (c) {
        c.powerOff();
        const timer = setTimeout(() => {
          if (this.containerPid) {
            try {
              process.kill(this.containerPid, 'SIGKILL');
            } catch {
              // already gone
            }
          }
        }, this.options.stopGraceMs ?? 60_000);
        void c.exited.then(() => clearTimeout(timer));
      }
    }
    return this.done;
  }

  snapshot(): ImageSimState {
    const { layout, devices } = this.options;
    const dev = (n: number) => devices.get(n) ?? '';
    return {
      daemonPid: null,
      containerPid: this.containerPid,
      bootedSlot: this.bootedSlot,
      trial: this.trial,
      bootCount: this.bootCount,
      partitions: { ...PI_LAYOUT.boot },
      slots: { A: { boot: dev(PI_LAYOUT.boot.A), rootfs: dev(PI_LAYOUT.root.A) }, B: { boot: dev(PI_LAYOUT.boot.B), rootfs: dev(PI_LAYOUT.root.B) } },
      autoboot: join(layout.bootconfig, 'autoboot.txt'),
      image: layout.image,
      devices: Object.fromEntries([...devices].map(([n, d]) => [String(n), d])),
      cause: this.cause,
    };
  }

  private log(line: string): void {
    this.options.log?.(line);
  }

  private publish(): Promise<void> {
    return writeFileDurably(this.options.layout.simJson, JSON.stringify(this.snapshot(), null, 2) + '\n');
  }

  private async run(): Promise<ImagePiExit> {
    const { layout, devices } = this.options;
    await mkdir(layout.rebootOut, { recursive: true });
    await writeFile(join(layout.rigDir, RECORDER_UNIT), recorderUnitText);
    let tryboot = false;
    let cause: BootCause = 'powerOn';
    for (;;) {
      if (this.stopping) return { code: 0 };
      const end = await this.bootOnce(tryboot, cause);
      await copyDirectoryToFat(layout.bootconfig, devices.get(PI_LAYOUT.bootconfig)!);
      if (end.kind === 'stopped' || end.kind === 'poweroff') {
        if (end.kind === 'poweroff') this.log('the system powered off');
        return { code: 0 };
      }
      tryboot = end.kind === 'reboot' && asksForTryboot(end.argument);
      cause = end.kind === 'reboot' ? (tryboot ? 'tryboot' : 'reboot') : end.kind;
      if (end.kind === 'reboot') this.log(`reboot${end.argument ? ` (argument "${end.argument}")` : ''}`);
      else this.log(end.kind === 'watchdog' ? 'watchdog reset' : 'power cut (the container was killed)');
    }
  }

  private async bootOnce(trybootRequested: boolean, cause: BootCause): Promise<
    { kind: 'reboot'; argument: string | undefined } | { kind: 'poweroff' | 'powerCut' | 'watchdog' | 'stopped' }
  > {
    const { layout, devices } = this.options;
    this.bootCount += 1;
    this.cause = cause;
    // The partition is the truth: its files are copied out afresh for every boot.
    await copyFatToDirectory(devices.get(PI_LAYOUT.bootconfig)!, layout.bootconfig);
    let autoboot;
    try {
      autoboot = await readAutoboot(join(layout.bootconfig, 'autoboot.txt'));
    } catch (err) {
      throw new Error(`the board cannot boot: ${(err as Error).message}`);
    }
    const { partition, trial } = chooseBoot(autoboot, trybootRequested);
    const slot = SLOTS.find((s) => PI_LAYOUT.boot[s] === partition);
    if (!slot) throw new Error(`the board cannot boot: autoboot.txt names partition ${partition}, which is no slot's boot partition (2 or 3)`);
    await mkdir(layout.deviceTreeDir, { recursive: true });
    await writeFile(join(layout.deviceTreeDir, 'partition'), encodeBootloaderValue(partition));
    await writeFile(join(layout.deviceTreeDir, 'tryboot'), encodeBootloaderValue(trial ? 1 : 0));
    this.bootedSlot = slot;
    this.trial = trial;
    this.log(`boot ${this.bootCount}: slot ${slot} (partition ${partition}${trial ? ', trial' : ''}; ${cause})`);

    if (trial && this.failTrial) {
      this.failTrial = false;
      const ms = this.options.watchdogMs ?? 10_000;
      this.log(`the trial boot of slot ${slot} hangs (--fail-trial); the watchdog resets the board in ${ms / 1000} s`);
      await this.publish();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        this.wakeHang = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeHang = undefined;
      return this.stopping ? { kind: 'stopped' } : { kind: 'watchdog' };
    }

    await mkdir(layout.rootMount, { recursive: true });
    await runHost('mount', ['-t', 'ext4', devices.get(PI_LAYOUT.root[slot])!, layout.rootMount]);
    try {
      await rm(join(layout.rebootOut, RECORDED_FILE), { force: true });
      const configOverride = await deviceTreeOverride(layout.rootMount, layout.rigDir);
      if (configOverride) this.log(`boot.deviceTreeDir overridden to ${SYS_DEVICE_TREE} for this boot (the image's config says /proc/device-tree, which a container cannot have)`);
      this.container = await bootContainer({
        root: layout.rootMount,
        hostname: this.options.hostname,
        binds: [...this.binds(), ...(configOverride ? [{ host: configOverride, guest: IMAGE_CONFIG, readOnly: true }] : [])],
        wants: [RECORDER_UNIT],
        consoleLog: layout.consoleLog,
      });
      if (this.stopping) this.container.powerOff();
      this.containerPid = (await this.waitForInit(this.container)) ?? null;
      await this.publish();
      const exit = await this.container.exited;
      this.container = undefined;
      this.containerPid = null;
      await this.publish();
      if (this.stopping) return { kind: 'stopped' };
      if (exit.code === NSPAWN_REBOOTED) {
        const argument = await readFile(join(layout.rebootOut, RECORDED_FILE), 'utf8').then((s) => s.trim(), () => undefined);
        return { kind: 'reboot', argument };
      }
      if (exit.code === 0) return { kind: 'poweroff' };
      return { kind: 'powerCut' };
    } finally {
      await runHost('umount', [layout.rootMount]);
    }
  }

  /** The container's init appears a moment after nspawn starts; undefined if it never did. */
  private async waitForInit(c: RunningContainer): Promise<number | undefined> {
    let ended = false;
    void c.exited.then(() => (ended = true));
    for (let i = 0; i < 200 && !ended; i++) {
      const pid = await c.initPid();
      if (pid) return pid;
      await new Promise((r) => setTimeout(r, 50));
    }
    return undefined;
  }

  /** What makes the container look like the Pi to the installed system (docs/simulator.md). */
  private binds(): Bind[] {
    const { layout, devices, dropIns = [] } = this.options;
    const binds: Bind[] = [];
    // The partitions at the names the shipped config uses; device access is the unit's own
    // DevicePolicy= (block-loop: these are loop devices).
    for (const [n, dev] of devices) binds.push({ host: dev, guest: `/dev/mmcblk0p${n}` });
    // udev's by-partuuid links, which fstab's root line names (systemd-remount-fs reads it): no
    // udev runs in a container, so the nodes themselves stand there.
    if (this.options.diskId) for (const [n, dev] of devices) binds.push({ host: dev, guest: `/dev/disk/by-partuuid/${partUuid(this.options.diskId, n)}` });
    binds.push({ host: layout.bootconfig, guest: '/boot/bootconfig' });
    binds.push({ host: layout.dataMount, guest: '/data' });
    // The kernel's own device-tree path; /proc/device-tree (a symlink to it on a Pi) cannot be
    // made in a container's /proc.
    binds.push({ host: layout.firmwareDir, guest: '/sys/firmware', readOnly: true });
    binds.push({ host: layout.rebootOut, guest: RECORDER_GUEST_DIR });
    binds.push({ host: join(layout.rigDir, RECORDER_UNIT), guest: `/run/systemd/system/${RECORDER_UNIT}`, readOnly: true });
    dropIns.forEach((d, i) => binds.push({ host: d.file, guest: `/run/systemd/system/${d.unit}.d/piota-sim-${i}.conf`, readOnly: true }));
    return binds;
  }
}
