import { firmwareUpdateView, resultOfStatus } from '../service/follow-update.js';
import type { DeviceTwin, JobDeviceResult } from './hub-port.js';

/**
 * Where one device of a rollout stands, as the evidence says: the twin's reported update status for
 * the updateId its method answer returned (the job's device result carries it), or for the update
 * its desired release started (`reported.piota.firmware`, matched by the desired id).
 */
export type DeviceStage =
  | 'pending' // its job has not reached it yet
  | 'waiting'
  | 'downloading'
  | 'applying'
  | 'applyComplete'
  | 'applyFailed'
  | 'downloadFailed'
  | 'refused' // answered the method with an error (busy, bad request): it took no update
  | 'offline'; // not connected when its job tried it; the desired release waits for it

export type OutcomeClass = 'succeeded' | 'failed' | 'offline' | 'running';

export interface DeviceOutcome {
  deviceId: string;
  wave: number;
  stage: DeviceStage;
  /** The update this rollout started on it, when known. */
  updateId: string | null;
  error: { code: string; message: string } | null;
  /** Reached through the desired release rather than the method. */
  viaDesired: boolean;
}

export function classOf(stage: DeviceStage): OutcomeClass {
  if (stage === 'applyComplete') return 'succeeded';
  if (stage === 'applyFailed' || stage === 'downloadFailed' || stage === 'refused') return 'failed';
  if (stage === 'offline') return 'offline';
  return 'running';
}

/** A device whose outcome no longer changes for this rollout (the wave can end without it). */
export function isSettled(stage: DeviceStage): boolean {
  return classOf(stage) !== 'running';
}

/** The hub could not reach the device: offline, not failed (IoT Hub's DeviceNotOnline after connectTimeoutInSeconds). */
export function isOfflineResult(r: JobDeviceResult): boolean {
  if (r.status !== 'failed') return false;
  const text = `${r.errorCode ?? ''} ${r.errorMessage ?? ''}`;
  return /DeviceNotOnline|not online|not connected|offline/i.test(text);
}

const STAGES: Record<string, DeviceStage> = {
  waiting: 'waiting',
  downloading: 'downloading',
  downloadComplete: 'applying',
  applying: 'applying',
  applyComplete: 'applyComplete',
  applyFailed: 'applyFailed',
  downloadFailed: 'downloadFailed',
};

/** The stage the twin reports for one update (null when the twin shows another update). */
function twinStage(twin: DeviceTwin, updateId: string): { stage: DeviceStage; error: DeviceOutcome['error'] } | null {
  const view = firmwareUpdateView(twin.reported);
  if (!view || view.updateId !== updateId || !view.status) return null;
  const ended = resultOfStatus(view.status);
  const stage = ended ?? STAGES[view.status] ?? 'applying';
  return { stage, error: view.error };
}

/** What the device reported about a desired release: `reported.piota.firmware`. */
function desiredDecision(twin: DeviceTwin): { desiredId: string | null; updateId: string | null; decision: string; message: string | null } | null {
  const piota = twin.reported.piota as Record<string, unknown> | undefined;
  const fw = piota && typeof piota === 'object' ? (piota.firmware as Record<string, unknown> | undefined) : undefined;
  if (!fw || typeof fw !== 'object') return null;
  const s = (v: unknown) => (typeof v === 'string' ? v : null);
  return { desiredId: s(fw.desiredId), updateId: s(fw.updateId), decision: String(fw.decision ?? ''), message: s(fw.message) };
}

/**
 * One device's outcome, from its twin, its line in the wave's job (if any yet) and the desired
 * release id this rollout wrote for it (if it did). The desired path wins once the device acted on
 * it; before that, the job's answer decides.
 */
export function deviceOutcome(twin: DeviceTwin, wave: number, job: JobDeviceResult | undefined, desiredId: string | null): DeviceOutcome {
  const base = { deviceId: twin.deviceId, wave, error: null, updateId: null, viaDesired: false };
  if (desiredId !== null) {
    const d = desiredDecision(twin);
    if (d && d.desiredId === desiredId) {
      if (d.decision === 'alreadyRunning') return { ...base, stage: 'applyComplete', viaDesired: true };
      if (d.decision === 'refused') return { ...base, stage: 'refused', viaDesired: true, error: { code: 'desiredRefused', message: d.message ?? 'the device refused the desired release' } };
      if (d.updateId) {
        const seen = twinStage(twin, d.updateId);
        return { ...base, stage: seen?.stage ?? 'waiting', error: seen?.error ?? null, updateId: d.updateId, viaDesired: true };
      }
    }
  }
  if (!job || job.status === 'pending' || job.status === 'scheduled' || job.status === 'running') {
    return { ...base, stage: 'pending' };
  }
  if (isOfflineResult(job)) return { ...base, stage: 'offline' };
  if (job.status === 'canceled' || job.status === 'cancelled') return { ...base, stage: 'pending' };
  if (job.status === 'failed' || job.methodStatus === undefined) {
    const code = job.errorCode ?? 'methodFailed';
    return { ...base, stage: 'refused', error: { code, message: job.errorMessage ?? `the hub could not call firmwareUpdate (${code})` } };
  }
  const payload = (job.methodPayload ?? {}) as Record<string, unknown>;
  const updateId = typeof payload.updateId === 'string' ? payload.updateId : null;
  if (job.methodStatus < 200 || job.methodStatus >= 300) {
    const message = typeof payload.message === 'string' ? payload.message : JSON.stringify(job.methodPayload);
    return { ...base, stage: 'refused', updateId, error: { code: `method${job.methodStatus}`, message } };
  }
  if (!updateId) return { ...base, stage: 'waiting' };
  const seen = twinStage(twin, updateId);
  return { ...base, stage: seen?.stage ?? 'waiting', error: seen?.error ?? null, updateId };
}
