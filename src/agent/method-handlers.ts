import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { SlotName } from './config.js';
import { isTerminal, reportedStatus, type DeviceState, type UpdateRecord } from './device-state.js';
import { parseFirmwareUpdateRequest, PayloadError } from './firmware-update-request.js';
import type { MethodAnswer } from './hub-link.js';
import type { UpdateRunner } from './update-runner.js';

export interface MethodDeps {
  state: DeviceState;
  bootedSlot: SlotName;
  save(): Promise<void>;
  statusChanged(): void;
  /** Waits (bounded) until the hub acknowledged the current reported picture. */
  flushReports(timeoutMs: number): Promise<boolean>;
  runner: UpdateRunner;
  logger: Logger;
  /** How long the `waiting` patch may take before the method is answered anyway. */
  ackTimeoutMs?: number;
}

/** The direct methods the daemon answers, per DESIGN.md. */
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
        message: `another update is in progress (${current.fwPackageUri}, ${reportedStatus(current.phase)}); cancel it with firmwareUpdateCancel or wait for it to end`,
        updateId: current.updateId,
        status: reportedStatus(current.phase),
      },
    };
  }
  const targetSlot: SlotName = deps.bootedSlot === 'A' ? 'B' : 'A';
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
  deps.state.update = update;
  await deps.save();
  deps.logger.info({ updateId: update.updateId, fwPackageUri: update.fwPackageUri, targetSlot }, 'update waiting');
  deps.statusChanged();
  // The caller may read the twin right after our answer: let the waiting patch land first, but
  // never hold the answer past the method timeout (the outbox delivers it later).
  const acked = await deps.flushReports(deps.ackTimeoutMs ?? 4000);
  if (!acked) deps.logger.warn({ updateId: update.updateId }, 'the hub has not acknowledged the waiting status yet; answering anyway');
  deps.runner.start(false);
  return { status: 200, payload: { updateId: update.updateId, message: `accepted: ${update.fwPackageUri} will be written to slot ${targetSlot}` } };
}

async function firmwareUpdateCancel(deps: MethodDeps): Promise<MethodAnswer> {
  const current = deps.state.update;
  if (!current || isTerminal(current.phase)) return { status: 200, payload: { message: 'nothing to cancel' } };
  if (!deps.runner.cancel()) {
    return {
      status: 409,
      payload: { message: `too late to cancel: applying has started (${current.phase})`, updateId: current.updateId, status: reportedStatus(current.phase) },
    };
  }
  deps.logger.info({ updateId: current.updateId }, 'update cancel requested');
  return { status: 200, payload: { message: 'cancelled', updateId: current.updateId } };
}
