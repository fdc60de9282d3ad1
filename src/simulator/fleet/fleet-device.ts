import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Slot } from '../../boot/backend.js';
import type { DaemonConfig } from '../../agent/config.js';
import { startDaemon, type RunningDaemon } from '../../agent/daemon.js';
import type { HttpSource } from '../../agent/workflow/context.js';
import { DownloadError } from '../../download/errors.js';
import { FleetBoard } from './fleet-board.js';
import type { FleetRole } from './seeded-picks.js';

/** Where a fleet device is: `offline` until brought online; `hung` while a failing trial waits for its watchdog. */
export type FleetDeviceStatus = 'offline' | 'running' | 'rebooting' | 'hung' | 'failed' | 'stopped';

export interface FleetDeviceSnapshot {
  id: string;
  role: FleetRole;
  status: FleetDeviceStatus;
  bootCount: number;
  bootedSlot: Slot;
  trial: boolean;
  /** Why the daemon could not start, when status is `failed`. */
  error: string | null;
}

export interface FleetDeviceOptions {
  id: string;
  dir: string;
  role: FleetRole;
  config: DaemonConfig;
  logger: Logger;
  agentVersion: string;
  /** How long a failing trial hangs before the simulated watchdog resets the board. */
  watchdogMs: number;
}

/**
 * One simulated Pi of the in-process fleet: its board (fleet-board.ts) and the real agent, run as an
 * instance in this process (startDaemon), stopped and started again at each reboot. Its role decides
 * the seeded fault: `failTrial` (every trial boot hangs, the watchdog resets the board, which boots
 * the committed slot), `failDownload` (every download is refused, as by a server answering 403).
 */
export class FleetDevice {
  readonly id: string;
  readonly role: FleetRole;
  private status: FleetDeviceStatus = 'offline';
  private bootCount = 0;
  private board: FleetBoard | undefined;
  private daemon: RunningDaemon | undefined;
  private error: string | null = null;
  private watchdog: NodeJS.Timeout | undefined;
  private rebootPending = false;
  /** Board transitions run one at a time, in order. */
  private actions: Promise<void> = Promise.resolve();

  constructor(private readonly options: FleetDeviceOptions) {
    this.id = options.id;
    this.role = options.role;
  }

  snapshot(): FleetDeviceSnapshot {
    return {
      id: this.id,
      role: this.role,
      status: this.status,
      bootCount: this.bootCount,
      bootedSlot: this.board?.booted ?? 'A',
      trial: this.board?.trial ?? false,
      error: this.error,
    };
  }

  get online(): boolean {
    return this.status !== 'offline' && this.status !== 'stopped';
  }

  /** Powers the board on (a no-op when it is on). */
  powerOn(): Promise<void> {
    return this.enqueue(async () => {
      if (this.status !== 'offline') return;
      this.board ??= await FleetBoard.open(join(this.options.dir, 'board.json'), (tryboot) => this.requestReboot(tryboot));
      await this.boot(false);
    });
  }

  /** Stops the agent and the board for good. */
  stop(): Promise<void> {
    clearTimeout(this.watchdog);
    return this.enqueue(async () => {
      clearTimeout(this.watchdog);
      await this.daemon?.stop();
      this.daemon = undefined;
      this.status = 'stopped';
    });
  }

  private enqueue(action: () => Promise<void>): Promise<void> {
    const run = this.actions.then(action);
    this.actions = run.catch((err: Error) => {
      this.status = 'failed';
      this.error = err.message;
      this.options.logger.error({ err: err.message }, 'the simulated device failed');
    });
    return this.actions;
  }

  /** Asked by the agent (through the board): the reboot happens after the call returns, as a real one does. */
  private requestReboot(tryboot: boolean): void {
    // As systemd merges a second reboot job into the running one.
    if (this.rebootPending || this.status === 'stopped') return;
    this.rebootPending = true;
    setImmediate(() => {
      void this.enqueue(async () => {
        this.rebootPending = false;
        if (this.status === 'stopped') return;
        this.status = 'rebooting';
        await this.daemon?.stop();
        this.daemon = undefined;
        await this.boot(tryboot);
      });
    });
  }

  private async boot(tryboot: boolean): Promise<void> {
    const board = this.board!;
    this.bootCount++;
    const { slot, trial } = board.boot(tryboot);
    await this.clearRuntimeDir();
    this.options.logger.info({ boot: this.bootCount, slot, trial }, 'board booted');
    if (trial && this.role === 'failTrial') {
      // The trial never comes up; the watchdog resets the board, which boots the committed slot.
      this.status = 'hung';
      const boot = this.bootCount;
      this.watchdog = setTimeout(() => {
        void this.enqueue(async () => {
          if (this.bootCount !== boot || this.status !== 'hung') return;
          this.options.logger.info('watchdog reset');
          await this.boot(false);
        });
      }, this.options.watchdogMs);
      return;
    }
    this.daemon = await startDaemon(this.options.config, this.options.logger, this.options.agentVersion, {
      boot: board,
      http: this.role === 'failDownload' ? refusedDownload : undefined,
      systemd: false,
    });
    this.status = 'running';
    this.error = null;
  }

  /** A reboot empties the runtime directory (tmpfs on a Pi): the agent's lock goes with it. */
  private async clearRuntimeDir(): Promise<void> {
    const dir = this.options.config.runtimeDir;
    for (const entry of await readdir(dir).catch(() => [])) await rm(join(dir, entry), { recursive: true, force: true });
  }
}

/** The `failDownload` role's download server: refuses every request, for good (no retries). */
const refusedDownload: HttpSource = async (request) => {
  throw new DownloadError('httpError', `GET ${new URL(request.url).host}: 403 Forbidden (simulated by the fleet's --fail-download-ratio)`, false);
};
