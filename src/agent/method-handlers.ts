import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Slot } from '../boot/backend.js';
import { isTerminal, reportedStatus, type DeviceState, type UpdateRecord } from './device-state.js';
import { parseFirmwareUpdateRequest, PayloadError } from './firmware-update-request.js';
import type { MethodAnswer } from './hub-link.js';
import { redactUri } from './redact-uri.js';

/** What the method handlers need of the runner. */
export interface UpdateDriver {
  start(resumed: boolean): void;
  /** Resolves true once the update is cancelled and that is persisted; false when it is too late. */
  cancel(): Promise<boolean>;
}

export interface MethodDeps {
  state: DeviceState;
  bootedSlot: Slot;
  /** Persists `state` (a new picture; the live state changes only once this resolved). */
  save(state: DeviceState): Promise<void>;
  statusChanged(): void;
  /** Waits (bounded) until the hub acknowledged the current reported picture. */
  flushReports(timeoutMs: number): Promise<boolean>;
  runner: UpdateDriver;
  logger: Logger;
  /** How long the `waiting` patch may take before the method is answered anyway. */
  ackTimeoutMs?: number;
}

/** The direct methods the daemon answers (docs/update-workflow.md, "Method answers"). */
export function methodHandlers(deps: MethodDeps) {
  return {
    firmwareUpdate: (payload: unknown) => firmwareUpdate(deps, payload),
    firmwareUpdateCancel: () => firmwareUpdateCancel(deps),
  };
}

async function firmwareUpdate(deps: MethodDeps, payload: unknown): Promise<MethodAnswer> {
  let request;
  try {
    request = parseFirmwareUpdateRequest(payload);
  } catch (err) {
    if (err instanceof PayloadError) {
      deps.logger.warn({ reason: err.message }, 'firmwareUpdate refused: bad payload');
      return { status: 400, payload: { message: err.message } };
    }
    throw err;
  }
  const current = deps.state.update;
  if (current && !isTerminal(current.phase)) {
    if (current.fwPackageUri === request.fwPackageUri) {
      return { status: 200, payload: { updateId: current.updateId, message: `this update is already in progress (${reportedStatus(current.phase)})` } };
    }
    return {
      status: 409,
      payload: {
        message: `another update is in progress (${redactUri(current.fwPackageUri)}, ${reportedStatus(current.phase)}); cancel it with firmwareUpdateCancel or wait for it to end`,
        updateId: current.updateId,
        status: reportedStatus(current.phase),
      },
    };
  }
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
  // Persisted first, adopted after: a save that fails leaves no update behind in memory.
  try {
    await deps.save({ ...deps.state, update });
  } catch (err) {
    deps.logger.error({ err: (err as Error).message }, 'firmwareUpdate refused: the state could not be saved');
    return { status: 500, payload: { message: `the device could not persist the update (${(err as Error).message}); nothing was started` } };
  }
  deps.state.update = update;
  deps.logger.info({ updateId: update.updateId, fwPackageUri: redactUri(update.fwPackageUri), targetSlot }, 'update waiting');
  deps.statusChanged();
  // The caller may read the twin right after our answer: let the waiting patch land first, but
  // never hold the answer past the method timeout (the outbox delivers it later).
  const acked = await deps.flushReports(deps.ackTimeoutMs ?? 4000);
  if (!acked) deps.logger.warn({ updateId: update.updateId }, 'the hub has not acknowledged the waiting status yet; answering anyway');
  deps.runner.start(false);
  return { status: 200, payload: { updateId: update.updateId, message: `accepted: ${redactUri(update.fwPackageUri)} will be written to slot ${targetSlot}` } };
}

async function firmwareUpdateCancel(deps: MethodDeps): Promise<MethodAnswer> {
  const current = deps.state.update;
  if (!current || isTerminal(current.phase)) return { status: 200, payload: { message: 'nothing to cancel' } };
  deps.logger.info({ updateId: current.updateId }, 'update cancel requested');
  if (!(await deps.runner.cancel())) {
    return {
      status: 409,
      payload: { message: `too late to cancel: applying has started (${current.phase})`, updateId: current.updateId, status: reportedStatus(current.phase) },
    };
  }
  return { status: 200, payload: { message: 'cancelled', updateId: current.updateId } };
}
