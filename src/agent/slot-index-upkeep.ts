import type { Logger } from 'pino';
import { buildSlotIndexInBackground, slotIndexPath, stopSlotIndexBuilds } from '../adaptive/slot-index-builds.js';
import { slotIndexInfo } from '../adaptive/slot-index.js';
import { DEFAULT_BLOCK_SIZE } from '../bundle/block-index.js';
import type { SlotPartitions } from './config.js';

/** The index's block size: the one `bundle create` gives format 2 bundles (the ext4 block). */
export const SLOT_INDEX_BLOCK_SIZE = DEFAULT_BLOCK_SIZE;

export interface SlotIndexUpkeepOptions {
  stateDir: string;
  /** The slot running now, and its partitions (by payload name). */
  slot: string;
  partitions: SlotPartitions;
  /**
   * When piota last wrote the slot (its record's installedAt), or null: an index built before then
   * describes the release the slot held before.
   */
  installedAt: () => string | null;
  bytesPerSecond: number;
  partitionSize: (path: string) => Promise<number>;
  logger: Pick<Logger, 'info' | 'warn'>;
  blockSize?: number;
}

/**
 * Keeps an index of every partition of the running slot in the state directory, built in idle time
 * so that the next update can be adaptive: the daemon calls `start()` when nothing else is going on
 * (at start-up on the committed slot, after an update ends). A pass builds, one partition at a time
 * and paced, each index that is missing, was built for another block size or before the slot was
 * last written. It shares each build with a download that wants the same file (one build per file),
 * and `stop()` abandons it without saving anything.
 */
export class SlotIndexUpkeep {
  private pass: Promise<void> | null = null;
  private again = false;
  private abort = new AbortController();
  private stopped = false;

  constructor(private readonly options: SlotIndexUpkeepOptions) {}

  /** Starts a pass unless one runs (then one more pass follows it). Never throws; failures are logged. */
  start(): void {
    if (this.stopped) return;
    if (this.pass) {
      this.again = true;
      return;
    }
    this.pass = (async () => {
      do {
        this.again = false;
        await this.runPass();
      } while (this.again && !this.stopped);
    })()
      .catch((err: unknown) => this.options.logger.warn({ err: (err as Error).message ?? String(err) }, 'slot index upkeep failed'))
      .finally(() => (this.pass = null));
  }

  /** Resolves when no pass runs (tests, and stop). */
  async settled(): Promise<void> {
    while (this.pass) await this.pass;
  }

  /** Stops the pass and every build under the state directory, and waits for them (promptly: the builds stop at their next MiB). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    await stopSlotIndexBuilds(this.options.stateDir);
    await this.settled();
  }

  private async runPass(): Promise<void> {
    const o = this.options;
    const blockSize = o.blockSize ?? SLOT_INDEX_BLOCK_SIZE;
    for (const [payload, device] of Object.entries(o.partitions)) {
      if (this.abort.signal.aborted) return;
      const current = await slotIndexInfo(slotIndexPath(o.stateDir, o.slot, payload));
      const installedAt = o.installedAt();
      const written = installedAt === null ? 0 : Date.parse(installedAt);
      if (current && current.blockSize === blockSize && !(current.builtAt < written)) continue;
      const size = await o.partitionSize(device);
      o.logger.info({ slot: o.slot, payload, bytes: size, bytesPerSecond: o.bytesPerSecond, reason: current ? 'stale' : 'missing' }, 'building the slot index in idle time');
      await buildSlotIndexInBackground(o.stateDir, o.slot, payload, device, size, o.bytesPerSecond, o.logger, { signal: this.abort.signal, blockSize });
    }
  }
}
