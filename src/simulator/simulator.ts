import { spawn, type ChildProcess } from 'node:child_process';
import { open, readdir, readFile, rm, type FileHandle } from 'node:fs/promises';
import { join, relative, isAbsolute } from 'node:path';
import { writeFileDurably } from '../os/durable-file.js';
import { SLOTS, type Slot } from '../boot/backend.js';
import { readAutoboot } from '../boot/autoboot-file.js';
import { encodeBootloaderValue } from '../boot/device-tree.js';
import { chooseBoot } from './firmware.js';
import { listenForReboots, type RebootListener, type RebootRequest } from './reboot-channel.js';
import { appendBootRecord, bootRecordFile, type BootCause } from './boot-record.js';

/** What the simulated firmware needs to know, taken from the daemon config it wrote. */
export interface FirmwareConfig {
  slots: Record<Slot, { boot: string; rootfs: string }>;
  autobootFile: string;
  deviceTreeDir: string;
  bootPartitions: Record<Slot, number>;
  runtimeDir: string;
}

export interface SimulatorOptions {
  /** The simulator's directory: the runtime directory is emptied at each boot only when inside it. */
  dir: string;
  firmware: FirmwareConfig;
  simJson: string;
  socket: string;
  /** The daemon's stdout and stderr are appended here. */
  daemonLog: string;
  /** The whole argv of the daemon, e.g. [node, bin/piota.js, 'daemon', '--config', file]. */
  daemonCommand: readonly string[];
  env?: NodeJS.ProcessEnv;
  /** The next trial boot hangs until the watchdog resets the board. */
  failTrial?: boolean;
  watchdogMs?: number;
  /** How long the daemon gets between SIGTERM and SIGKILL when the board reboots. */
  stopGraceMs?: number;
  /** This many crashes within crashWindowMs end the simulation (a config error must not spin). */
  crashLimit?: number;
  crashWindowMs?: number;
  /** One line per firmware event (boot, crash, power cut, reset). */
  log?: (line: string) => void;
}

/** The contents of DIR/sim.json (docs/simulator.md). */
export interface SimState {
  daemonPid: number | null;
  bootedSlot: Slot | null;
  trial: boolean;
  bootCount: number;
  partitions: Record<Slot, number>;
  slots: Record<Slot, { boot: string; rootfs: string }>;
  autoboot: string;
}

export interface SimulatorExit {
  code: number;
  message?: string;
}

export interface Simulator {
  state(): SimState;
  /** Stops the daemon (SIGTERM, then SIGKILL) and the simulation; resolves with the exit. */
  stop(): Promise<SimulatorExit>;
  /** Resolves when the simulation ends, by stop() or by a fatal problem (code 1 and a message). */
  readonly done: Promise<SimulatorExit>;
}

interface Daemon {
  child: ChildProcess;
  exited: Promise<void>;
}

/** Boots the simulated Pi and keeps playing its firmware until stopped. */
export async function startSimulator(options: SimulatorOptions): Promise<Simulator> {
  const pi = new SimulatedPi(options);
  await pi.powerOn();
  return { state: () => pi.snapshot(), stop: () => pi.stop(), done: pi.done };
}

class SimulatedPi {
  readonly done: Promise<SimulatorExit>;
  private finish!: (exit: SimulatorExit) => void;
  private daemon: Daemon | undefined;
  private bootedSlot: Slot | null = null;
  private trial = false;
  private bootCount = 0;
  private failTrial: boolean;
  private watchdog: NodeJS.Timeout | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private crashes: number[] = [];
  private ending = false;
  /** A reboot was accepted and the board has not booted yet: later requests merge into it. */
  private rebootPending = false;
  /** Every transition runs in order, one at a time: events only enqueue. */
  private actions: Promise<void> = Promise.resolve();
  private writes: Promise<void> = Promise.resolve();
  private listener: RebootListener | undefined;
  private logFile: FileHandle | undefined;
  /** DIR/boots.jsonl when the PIOTA_SIM_BOOT_RECORD test hook is set (boot-record.ts). */
  private readonly bootRecord: string | undefined;

  constructor(private readonly options: SimulatorOptions) {
    this.failTrial = options.failTrial ?? false;
    this.bootRecord = bootRecordFile(options.dir);
    this.done = new Promise((resolve) => (this.finish = resolve));
  }

  snapshot(): SimState {
    const f = this.options.firmware;
    return {
      daemonPid: this.daemon?.child.pid ?? null,
      bootedSlot: this.bootedSlot,
      trial: this.trial,
      bootCount: this.bootCount,
      partitions: { ...f.bootPartitions },
      slots: { A: { ...f.slots.A }, B: { ...f.slots.B } },
      autoboot: f.autobootFile,
    };
  }

  async powerOn(): Promise<void> {
    // The socket first: it refuses a second simulator on this board before anything is touched.
    this.listener = await listenForReboots(this.options.socket, (request) => {
      // As systemd merges a second reboot job into the running one: a late request from the old
      // daemon must not reboot the board it has just booted.
      if (this.rebootPending) return;
      this.rebootPending = true;
      this.enqueue(() => this.reboot(request));
    });
    try {
      await this.killLeftoverDaemon();
      this.logFile = await open(this.options.daemonLog, 'a');
    } catch (err) {
      await this.listener.close();
      throw err;
    }
    this.enqueue(() => this.boot(false, 'powerOn'));
  }

  /**
   * A simulator that was itself SIGKILLed leaves its daemon running (nothing kills a child with its
   * parent). Powering the same Pi on again must not give it two daemons: the one sim.json names is
   * killed, if it is still a daemon of this config (checked in /proc, so a reused pid is left alone).
   */
  private async killLeftoverDaemon(): Promise<void> {
    let pid: unknown;
    try {
      pid = (JSON.parse(await readFile(this.options.simJson, 'utf8')) as Partial<SimState>).daemonPid;
    } catch {
      return;
    }
    if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 1) return;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    const configFile = this.options.daemonCommand[this.options.daemonCommand.length - 1];
    if (!cmdline.split('\0').includes(configFile)) return;
    this.log(`killing the daemon left running by an earlier simulator (pid ${pid})`);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      return;
    }
    const deadline = Date.now() + 2000;
    while (Date.now() < deadline && (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')) !== '') {
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  stop(): Promise<SimulatorExit> {
    this.end({ code: 0 });
    return this.done;
  }

  private log(line: string): void {
    this.options.log?.(line);
  }

  private enqueue(action: () => Promise<void>): void {
    this.actions = this.actions.then(action).catch((err: unknown) => this.end({ code: 1, message: (err as Error).message }));
  }

  private clearTimers(): void {
    clearTimeout(this.watchdog);
    clearTimeout(this.restartTimer);
    this.watchdog = this.restartTimer = undefined;
  }

  /** Power on or reset: the firmware picks a partition, publishes it in the device tree, starts the OS. */
  private async boot(trybootRequested: boolean, cause: BootCause): Promise<void> {
    if (this.ending) return;
    this.bootCount += 1;
    const f = this.options.firmware;
    let autoboot;
    try {
      autoboot = await readAutoboot(f.autobootFile);
    } catch (err) {
      throw new Error(`the board cannot boot: ${(err as Error).message}`);
    }
    const { partition, trial } = chooseBoot(autoboot, trybootRequested);
    const slot = SLOTS.find((s) => f.bootPartitions[s] === partition);
    if (!slot) throw new Error(`the board cannot boot: autoboot.txt names partition ${partition}, which is no slot's boot partition`);
    await writeFileDurably(join(f.deviceTreeDir, 'partition'), encodeBootloaderValue(partition));
    await writeFileDurably(join(f.deviceTreeDir, 'tryboot'), encodeBootloaderValue(trial ? 1 : 0));
    await this.clearRuntimeDir();
    if (this.bootRecord) await appendBootRecord(this.bootRecord, { boot: this.bootCount, cause, slot, partition, trial }, f.slots[slot]);
    this.bootedSlot = slot;
    this.trial = trial;
    this.log(`boot ${this.bootCount}: slot ${slot} (partition ${partition}${trial ? ', trial' : ''})`);
    if (trial && this.failTrial) {
      this.failTrial = false;
      const ms = this.options.watchdogMs ?? 3000;
      this.log(`the trial boot of slot ${slot} hangs (--fail-trial); the watchdog resets the board in ${ms / 1000} s`);
      const boot = this.bootCount;
      this.watchdog = setTimeout(() => {
        this.enqueue(async () => {
          if (this.bootCount !== boot) return;
          this.log('watchdog reset');
          await this.boot(false, 'watchdog');
        });
      }, ms);
      await this.publish();
      return;
    }
    this.startDaemon();
    await this.publish();
  }

  /** A reboot empties the runtime directory (tmpfs on a Pi); only ever inside the simulator's directory. */
  private async clearRuntimeDir(): Promise<void> {
    const dir = this.options.firmware.runtimeDir;
    const rel = relative(this.options.dir, dir);
    if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) return;
    for (const entry of await readdir(dir).catch(() => [])) await rm(join(dir, entry), { recursive: true, force: true });
  }

  private startDaemon(): void {
    const [command, ...args] = this.options.daemonCommand;
    const fd = this.logFile!.fd;
    const child = spawn(command, args, { stdio: ['ignore', fd, fd], env: this.options.env ?? process.env });
    let exited!: () => void;
    const daemon: Daemon = { child, exited: new Promise((resolve) => (exited = resolve)) };
    let handled = false;
    const onEnd = (code: number | null, signal: NodeJS.Signals | null, error?: Error) => {
      if (handled) return;
      handled = true;
      exited();
      this.enqueue(() => this.daemonEnded(daemon, code, signal, error));
    };
    child.on('exit', (code, signal) => onEnd(code, signal));
    child.on('error', (err) => onEnd(null, null, err)); // could not start at all
    this.daemon = daemon;
    this.log(`daemon started (pid ${child.pid ?? '?'})`);
  }

  /** The daemon ended without being asked to: SIGKILL is a power cut, anything else a crash. */
  private async daemonEnded(daemon: Daemon, code: number | null, signal: NodeJS.Signals | null, error?: Error): Promise<void> {
    if (daemon !== this.daemon || this.ending) return; // stopped on purpose
    this.daemon = undefined;
    if (signal === 'SIGKILL') {
      this.log('the daemon was killed (SIGKILL): power cut');
      await this.publish();
      await this.boot(false, 'powerCut');
      return;
    }
    const how = error ? `could not start (${error.message})` : signal ? `was killed by ${signal}` : `exited with code ${code}`;
    const now = Date.now();
    const window = this.options.crashWindowMs ?? 60_000;
    this.crashes = this.crashes.filter((t) => now - t < window).concat(now);
    const limit = this.options.crashLimit ?? 5;
    if (this.crashes.length >= limit) {
      throw new Error(`the daemon crashed ${this.crashes.length} times within ${window / 1000} s (last: it ${how}); see ${this.options.daemonLog}`);
    }
    const delay = Math.min(250 * 2 ** (this.crashes.length - 1), 4000);
    this.log(`the daemon ${how}: restarting it in ${delay} ms`);
    await this.publish();
    const boot = this.bootCount;
    this.restartTimer = setTimeout(() => {
      this.enqueue(async () => {
        if (this.ending || this.bootCount !== boot || this.daemon) return;
        this.startDaemon();
        await this.publish();
      });
    }, delay);
  }

  private async reboot(request: RebootRequest): Promise<void> {
    if (this.ending) return void (this.rebootPending = false);
    this.clearTimers();
    this.log(request.tryboot ? 'reboot requested (tryboot)' : 'reboot requested');
    try {
      const how = await this.stopDaemon();
      await this.publish();
      if (how === 'cut') {
        // The power went while the system was shutting down: no reboot argument reaches the firmware.
        this.log('the daemon was killed (SIGKILL) during the shutdown: power cut');
        await this.boot(false, 'powerCut');
      } else {
        await this.boot(request.tryboot, request.tryboot ? 'tryboot' : 'reboot');
      }
    } finally {
      this.rebootPending = false;
    }
  }

  /**
   * SIGTERM, then SIGKILL after the grace period, as systemd does at shutdown. 'cut' when the daemon
   * died of a SIGKILL the simulator did not send (a power cut in the middle of the shutdown).
   */
  private async stopDaemon(): Promise<'stopped' | 'cut'> {
    const daemon = this.daemon;
    if (!daemon) return 'stopped';
    this.daemon = undefined;
    const cutBefore = () => (daemon.child.signalCode === 'SIGKILL' ? 'cut' : 'stopped');
    if (daemon.child.exitCode !== null || daemon.child.signalCode !== null || daemon.child.pid === undefined) return cutBefore();
    daemon.child.kill('SIGTERM');
    const grace = this.options.stopGraceMs ?? 5000;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      daemon.exited.then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), grace))),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      this.log(`the daemon did not stop within ${grace / 1000} s of SIGTERM: SIGKILL`);
      daemon.child.kill('SIGKILL');
      await daemon.exited;
      return 'stopped';
    }
    return cutBefore();
  }

  private end(exit: SimulatorExit): void {
    if (this.ending) return;
    this.ending = true;
    this.clearTimers();
    // Not through enqueue: a failed action has already ended its chain.
    this.actions = this.actions.then(async () => {
      if (exit.message) this.log(exit.message);
      await this.stopDaemon().catch(() => undefined);
      await this.publish().catch(() => undefined);
      await this.listener?.close();
      await this.logFile?.close().catch(() => undefined);
      this.finish(exit);
    });
  }

  /** Rewrites sim.json atomically; writes run in order, so the file always ends at the newest state. */
  private publish(): Promise<void> {
    const state = this.snapshot();
    this.writes = this.writes.catch(() => undefined).then(() => writeFileDurably(this.options.simJson, JSON.stringify(state, null, 2) + '\n'));
    return this.writes;
  }
}
