/**
 * The service side of an update, as Microsoft's TriggerFWUpdate does it and better: invoke
 * `firmwareUpdate`, then follow the twin every 500 ms, keyed on the `updateId` of the answer, until
 * the update ends or the time runs out. Transport-free: the hub is reached through `HubService`.
 */

export interface MethodResult {
  status: number;
  payload: unknown;
}

/** What trigger needs of the service SDK (wired to azure-iothub's Client and Registry). */
export interface HubService {
  invokeMethod(deviceId: string, methodName: string, payload: unknown, responseTimeoutInSeconds: number): Promise<MethodResult>;
  reportedProperties(deviceId: string): Promise<Record<string, unknown>>;
}

/** The hub refused the call itself: the device is not connected or not registered. */
export class DeviceUnreachableError extends Error {
  override name = 'DeviceUnreachableError';
}

export interface FirmwareUpdateView {
  status: string | null;
  updateId: string | null;
  error: { code: string; message: string } | null;
  progress: { bytes: number; totalBytes: number | null; percent: number | null } | null;
  targetVersion: string | null;
  waitingFor: string | null;
  applyAt: string | null;
  firmwareVersion: string | null;
}

export type FollowEvent =
  | { event: 'accepted'; time: string; updateId: string | null; message: string }
  | { event: 'status'; time: string; status: string; updateId: string | null; waitingFor: string | null; applyAt: string | null; error: { code: string; message: string } | null }
  | { event: 'progress'; time: string; bytes: number; totalBytes: number | null; percent: number | null }
  | { event: 'result'; time: string; result: UpdateEnd | 'refused' | 'timeout' | 'offline' | 'error'; exitCode: number; updateId: string | null; message: string; error?: { code: string; message: string } | null; firmwareVersion?: string | null; status?: number };

export interface FollowOptions {
  deviceId: string;
  payload: Record<string, unknown>;
  timeoutMs: number;
  pollMs?: number;
  onEvent(e: FollowEvent): void;
  /** For tests: the clock and the waiting. */
  sleep?: (ms: number) => Promise<void>;
  /** Stops following (Ctrl-C in the demo): the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

export const EXIT = { applyComplete: 0, failed: 1, usage: 2, refused: 3, timeout: 4, offline: 5 } as const;

/** Runs the whole operation; resolves to the final `result` event (also passed to onEvent). */
export async function triggerAndFollow(hub: HubService, options: FollowOptions): Promise<Extract<FollowEvent, { event: 'result' }>> {
  const deadline = Date.now() + options.timeoutMs;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const now = () => new Date().toISOString();
  const finish = (e: Omit<Extract<FollowEvent, { event: 'result' }>, 'event' | 'time'>) => {
    const result = { event: 'result' as const, time: now(), ...e };
    options.onEvent(result);
    return result;
  };

  // A device without updateIds (Microsoft's sample) is followed from the first change after this
  // snapshot, so a result left on the twin by an earlier update is not taken for this one's.
  const before = await hub.reportedProperties(options.deviceId).then(firmwareUpdateView, () => null);
  let answer: MethodResult;
  try {
    const methodTimeout = Math.max(5, Math.min(300, Math.floor(options.timeoutMs / 1000)));
    answer = await hub.invokeMethod(options.deviceId, 'firmwareUpdate', options.payload, Math.min(methodTimeout, 60));
  } catch (err) {
    if (err instanceof DeviceUnreachableError) return finish({ result: 'offline', exitCode: EXIT.offline, updateId: null, message: err.message });
    throw err;
  }
  const body = (answer.payload ?? {}) as Record<string, unknown>;
  const message = typeof body.message === 'string' ? body.message : typeof answer.payload === 'string' ? answer.payload : JSON.stringify(answer.payload);
  if (answer.status < 200 || answer.status >= 300) {
    return finish({ result: 'refused', exitCode: EXIT.refused, updateId: typeof body.updateId === 'string' ? body.updateId : null, message: `the device answered ${answer.status}: ${message}`, status: answer.status });
  }
  const updateId = typeof body.updateId === 'string' ? body.updateId : null;
  options.onEvent({ event: 'accepted', time: now(), updateId, message });

  let lastStatus: string | null = null;
  let lastBytes: number | null = null;
  let lastPollError = '';
  let followingUnkeyed = false;
  for (;;) {
    if (options.signal?.aborted) throw options.signal.reason;
    if (Date.now() >= deadline) {
      return finish({ result: 'timeout', exitCode: EXIT.timeout, updateId, message: `no result within ${Math.round(options.timeoutMs / 1000)} s (last status: ${lastStatus ?? 'none'})` });
    }
    let view: FirmwareUpdateView | null = null;
    try {
      view = firmwareUpdateView(await hub.reportedProperties(options.deviceId));
      lastPollError = '';
    } catch (err) {
      // The hub may blink; keep following until the deadline, but say so once.
      if ((err as Error).message !== lastPollError) {
        lastPollError = (err as Error).message;
        options.onEvent({ event: 'status', time: now(), status: `(cannot read the twin: ${lastPollError})`, updateId, waitingFor: null, applyAt: null, error: null });
      }
    }
    // A device that answered with an updateId is followed on that update only: a twin still showing
    // the previous update's result is not this one's.
    if (view && updateId === null && !followingUnkeyed) followingUnkeyed = JSON.stringify(view) !== JSON.stringify(before);
    if (view && view.status && (updateId === null ? followingUnkeyed : view.updateId === updateId)) {
      if (view.status !== lastStatus) {
        lastStatus = view.status;
        options.onEvent({ event: 'status', time: now(), status: view.status, updateId: view.updateId, waitingFor: view.waitingFor, applyAt: view.applyAt, error: view.error });
      }
      if (view.status === 'downloading' && view.progress && view.progress.bytes !== lastBytes) {
        lastBytes = view.progress.bytes;
        options.onEvent({ event: 'progress', time: now(), ...view.progress });
      }
      const ended = resultOfStatus(view.status);
      if (ended === 'applyComplete') {
        return finish({ result: 'applyComplete', exitCode: EXIT.applyComplete, updateId, message: `applied; the device runs ${view.firmwareVersion ?? view.targetVersion ?? 'the new version'}`, firmwareVersion: view.firmwareVersion });
      }
      if (ended) {
        const why = view.error ? `${view.error.code}: ${view.error.message}` : 'no reason given';
        const said = view.status === ended ? '' : `, reported as "${view.status}"`;
        return finish({ result: ended, exitCode: EXIT.failed, updateId, message: `${ended} (${why}${said})`, error: view.error, firmwareVersion: view.firmwareVersion });
      }
    }
    await sleep(Math.min(options.pollMs ?? 500, Math.max(0, deadline - Date.now())));
  }
}

export type UpdateEnd = 'applyComplete' | 'downloadFailed' | 'applyFailed';

/**
 * Microsoft's Node device sample (dmpatterns_fwupdate_device.js in azure-iot-sdk-node) ends an update
 * with statuses of its own words, whose case differs between the sample's versions; without these a
 * trigger following such a device would wait for its timeout.
 */
const SAMPLE_ENDS = new Map<string, UpdateEnd>([
  ['apply firmware image complete', 'applyComplete'],
  ['download image failed', 'downloadFailed'],
  ['apply image failed', 'applyFailed'],
]);

/** The result a reported status means, or null while the update goes on (or the status is unknown). */
export function resultOfStatus(status: string): UpdateEnd | null {
  if (status === 'applyComplete' || status === 'downloadFailed' || status === 'applyFailed') return status;
  return SAMPLE_ENDS.get(status.trim().toLowerCase()) ?? null;
}

/** Reads `iothubDM` from reported properties, tolerating other schemas (Microsoft's samples). */
export function firmwareUpdateView(reported: Record<string, unknown>): FirmwareUpdateView | null {
  const dm = reported.iothubDM as Record<string, unknown> | undefined;
  if (!dm || typeof dm !== 'object') return null;
  const fu = (dm.firmwareUpdate ?? {}) as Record<string, unknown>;
  const str = (v: unknown) => (typeof v === 'string' ? v : null);
  const progress = fu.progress as FirmwareUpdateView['progress'];
  const error = fu.error as FirmwareUpdateView['error'];
  return {
    status: str(fu.status),
    updateId: str(fu.updateId),
    error: error && typeof error === 'object' && typeof error.code === 'string' ? { code: error.code, message: String(error.message ?? '') } : null,
    progress: progress && typeof progress === 'object' && typeof progress.bytes === 'number' ? progress : null,
    targetVersion: str(fu.targetVersion),
    waitingFor: str(fu.waitingFor),
    applyAt: str(fu.applyAt),
    firmwareVersion: str(dm.firmwareVersion),
  };
}
