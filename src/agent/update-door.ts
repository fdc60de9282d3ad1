import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Slot } from '../boot/backend.js';
import type { DeviceState, UpdateRecord } from './device-state.js';
import type { FirmwareUpdateRequest } from './firmware-update-request.js';
import { redactUri } from './redact-uri.js';

/** What starting an update needs of the runner. */
export interface UpdateDriver {
  start(resumed: boolean): void;
  /** Resolves true once the update is cancelled and that is persisted; false when it is too late. */
  cancel(): Promise<boolean>;
}

export interface UpdateDoorDeps {
  state: DeviceState;
  bootedSlot: Slot;
  /** Persists `state` (a new picture; the live state changes only once this resolved). */
  save(state: DeviceState): Promise<void>;
  statusChanged(): void;
  /** Waits (bounded) until the hub acknowledged the current reported picture. */
  flushReports(timeoutMs: number): Promise<boolean>;
  runner: UpdateDriver;
  logger: Logger;
  /** How long the `waiting` patch may take before the caller is answered anyway. */
  ackTimeoutMs?: number;
}

export type BeginResult = { ok: true; update: UpdateRecord } | { ok: false; message: string };

/**
 * The one way a new update starts, for the direct method and for a desired release alike. Decisions
 * pass one at a time (`exclusive`), so the look at the current update and the save that starts the
 * next one never interleave with another caller's: a method and a desired release cannot both start.
 */
export class UpdateDoor {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(readonly deps: UpdateDoorDeps) {}

  /** Runs `decide` after every decision asked for before it has ended. */
  exclusive<T>(decide: () => Promise<T>): Promise<T> {
    const run = this.queue.then(decide);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Call inside exclusive(), with no update running. Persists the new update (with `extra`: fields of
   * the state, made from the update, saved in the same write), adopts it, reports `waiting`, and
   * starts the runner.
   */
  async begin(request: FirmwareUpdateRequest, extraOf: (update: UpdateRecord) => Record<string, unknown> = () => ({})): Promise<BeginResult> {
    const { deps } = this;
    const targetSlot: Slot = deps.bootedSlot === 'A' ? 'B' : 'A';
    const update: UpdateRecord = {
      updateId: randomUUID(),
      fwPackageUri: request.fwPackageUri,
      pinnedSha256: request.sha256,
      expectedVersion: request.version,
      applyNow: request.applyNow,
      phase: 'waiting',
      fromSlot: deps.bootedSlot,
      targetSlot,
      bundle: null,
      nextChunk: 0,
      bytesDownloaded: 0,
      error: null,
      times: {
        startedWaitingTime: new Date().toISOString(),
        startedDownloadingTime: null,
        downloadCompleteTime: null,
        startedApplyingImage: null,
        lastFirmwareUpdate: null,
      },
      trialStartedAt: null,
      entries: { waiting: 1 },
    };
    const extra = extraOf(update);
    // Persisted first, adopted after: a save that fails leaves no update behind in memory.
    try {
      await deps.save({ ...deps.state, ...extra, update });
    } catch (err) {
      deps.logger.error({ err: (err as Error).message }, 'update refused: the state could not be saved');
      return { ok: false, message: `the device could not persist the update (${(err as Error).message}); nothing was started` };
    }
    Object.assign(deps.state, extra);
    deps.state.update = update;
    deps.logger.info({ updateId: update.updateId, fwPackageUri: redactUri(update.fwPackageUri), targetSlot }, 'update waiting');
    deps.statusChanged();
    // The caller may read the twin right after our answer: let the waiting patch land first, but
    // never hold the answer past the method timeout (the outbox delivers it later).
    const acked = await deps.flushReports(deps.ackTimeoutMs ?? 4000);
    if (!acked) deps.logger.warn({ updateId: update.updateId }, 'the hub has not acknowledged the waiting status yet; answering anyway');
    deps.runner.start(false);
    return { ok: true, update };
  }
}
