import { readFile } from 'node:fs/promises';
import type { BootBackend, Slot } from '../../boot/backend.js';
import { writeFileDurably } from '../../os/durable-file.js';

/** What the board keeps across reboots (its "autoboot.txt"): DIR/board.json. */
export interface BoardRecord {
  committed: Slot;
  /** The slot a tryboot reboot boots once. */
  tryboot: Slot;
}

/**
 * The in-process fleet's boot firmware and the daemon's boot backend in one: the Pi's tryboot rules
 * (a tryboot reboot boots `tryboot` once as a trial; every other boot, the committed slot), played in
 * memory and persisted to a small JSON file, with reboots handed to the device (`requestReboot`).
 * The one-Pi simulator plays the real files (autoboot.txt, device tree) and power cuts instead.
 */
export class FleetBoard implements BootBackend {
  readonly name = 'fleet-firmware';
  booted: Slot;
  trial = false;

  private constructor(
    private readonly file: string,
    private record: BoardRecord,
    private readonly requestReboot: (tryboot: boolean) => void,
  ) {
    this.booted = record.committed;
  }

  static async open(file: string, requestReboot: (tryboot: boolean) => void): Promise<FleetBoard> {
    let record: BoardRecord = { committed: 'A', tryboot: 'A' };
    try {
      const parsed = JSON.parse(await readFile(file, 'utf8')) as Partial<BoardRecord>;
      if (isSlot(parsed.committed) && isSlot(parsed.tryboot)) record = { committed: parsed.committed, tryboot: parsed.tryboot };
    } catch {
      // a new board boots slot A
    }
    return new FleetBoard(file, record, requestReboot);
  }

  /** The firmware's choice at power on or reset (tryboot false) or after a tryboot reboot. */
  boot(tryboot: boolean): { slot: Slot; trial: boolean } {
    this.trial = tryboot;
    this.booted = tryboot ? this.record.tryboot : this.record.committed;
    return { slot: this.booted, trial: this.trial };
  }

  async bootedSlot(): Promise<Slot> {
    return this.booted;
  }

  async isTrialBoot(): Promise<boolean> {
    return this.trial;
  }

  async committedSlot(): Promise<Slot> {
    return this.record.committed;
  }

  async startTrial(slot: Slot): Promise<void> {
    await this.save({ ...this.record, tryboot: slot });
    this.requestReboot(true);
  }

  async clearTrial(): Promise<void> {
    if (this.record.tryboot !== this.record.committed) await this.save({ ...this.record, tryboot: this.record.committed });
  }

  async commit(slot: Slot): Promise<void> {
    await this.save({ committed: slot, tryboot: slot });
  }

  async reboot(): Promise<void> {
    this.requestReboot(false);
  }

  private async save(record: BoardRecord): Promise<void> {
    await writeFileDurably(this.file, JSON.stringify(record) + '\n');
    this.record = record;
  }
}

function isSlot(v: unknown): v is Slot {
  return v === 'A' || v === 'B';
}
