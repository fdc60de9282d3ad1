import { readFile } from 'node:fs/promises';
import type { Slot } from '../boot/backend.js';
import type { DaemonConfig } from './config.js';
import type { DeviceState } from './device-state.js';
import type { BootBackend } from './ports.js';

/**
 * The version running now: the booted slot's record (written when piota installed it); before piota
 * has installed anything there, the first line of the config's versionFile, else initialVersion.
 */
export async function runningVersion(config: DaemonConfig, state: DeviceState, booted: Slot): Promise<string> {
  const record = state.slots[booted];
  if (record) return record.version;
  if (config.versionFile) {
    try {
      const first = (await readFile(config.versionFile, 'utf8')).split('\n')[0].trim();
      if (first) return first;
    } catch {
      // no version file in this image: fall through to the configured initial version
    }
  }
  return config.initialVersion;
}

/** What the daemon reports about the device besides the update: the boot facts and the running version. */
export class Inventory {
  private constructor(
    readonly bootedSlot: Slot,
    private committed: Slot,
    readonly trialBoot: boolean,
    private version: string,
    private readonly boot: BootBackend,
    private readonly config: DaemonConfig,
    private readonly state: DeviceState,
  ) {}

  static async read(boot: BootBackend, config: DaemonConfig, state: DeviceState): Promise<Inventory> {
    const booted = await boot.bootedSlot();
    return new Inventory(booted, await boot.committedSlot(), await boot.isTrialBoot(), await runningVersion(config, state, booted), boot, config, state);
  }

  get committedSlot(): Slot {
    return this.committed;
  }

  get runningVersion(): string {
    return this.version;
  }

  /** Re-reads what an update may have changed: the committed slot (after a commit) and the booted slot's record. */
  async refresh(): Promise<void> {
    this.committed = await this.boot.committedSlot().catch(() => this.committed);
    this.version = await runningVersion(this.config, this.state, this.bootedSlot);
  }
}
