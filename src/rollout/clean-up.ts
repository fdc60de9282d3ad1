import type { DeviceTwin, RolloutHub } from './hub-port.js';
import { HubCallError } from './hub-port.js';
import { hasDesiredRelease } from './evidence.js';
import type { DeviceOutcome } from './outcome.js';
import type { RolloutRecord } from './record.js';

export interface CleanUpReport {
  jobsCancelled: string[];
  configurationsRemoved: string[];
  cancelSent: string[];
  desiredCleared: string[];
  problems: string[];
}

const CANCELLABLE = new Set(['waiting', 'downloading']);

/**
 * What a halt or an abort does to the hub: cancels the rollout's jobs still active (so no more
 * devices are called), sends `firmwareUpdateCancel` to devices of this rollout still waiting or
 * downloading (the device refuses once applying has started: too late, and says so), and removes
 * the desired release from devices that have not acted on it yet. Idempotent: run again after a
 * crash, it finds less to do.
 */
export async function cleanUp(hub: RolloutHub, record: RolloutRecord, outcomes: readonly DeviceOutcome[], twins: readonly DeviceTwin[]): Promise<CleanUpReport> {
  const report: CleanUpReport = { jobsCancelled: [], configurationsRemoved: [], cancelSent: [], desiredCleared: [], problems: [] };
  const name = record.definition.name;
  for (const w of record.waves) {
    if (!w.jobId) continue;
    try {
      const job = await hub.getJob(w.jobId);
      if (job && (job.status === 'queued' || job.status === 'scheduled' || job.status === 'running')) {
        await hub.cancelJob(w.jobId);
        report.jobsCancelled.push(w.jobId);
      }
    } catch (err) {
      report.problems.push(`job ${w.jobId}: ${(err as Error).message}`);
    }
  }
  // Before the desired releases are removed below, or the hub would write them again. Deleting a
  // configuration leaves what it wrote on the twins (as in IoT Hub).
  for (const w of record.waves) {
    if (!w.configurationId) continue;
    try {
      await hub.removeConfiguration(w.configurationId);
      report.configurationsRemoved.push(w.configurationId);
    } catch (err) {
      if (err instanceof HubCallError && err.kind === 'notFound') continue;
      report.problems.push(`configuration ${w.configurationId}: ${(err as Error).message}`);
    }
  }
  for (const o of outcomes) {
    if (!CANCELLABLE.has(o.stage)) continue;
    try {
      await hub.invokeMethod(o.deviceId, { methodName: 'firmwareUpdateCancel', payload: {}, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 0 });
      report.cancelSent.push(o.deviceId);
    } catch (err) {
      // Offline now, or gone: its update goes on or not; the twin will say.
      if (!(err instanceof HubCallError)) throw err;
      report.problems.push(`${o.deviceId}: ${err.message}`);
    }
  }
  const acted = new Set(outcomes.filter((o) => o.viaDesired).map((o) => o.deviceId));
  for (const t of twins) {
    if (!hasDesiredRelease(t, name) || acted.has(t.deviceId)) continue;
    try {
      await hub.updateTwin(t.deviceId, { properties: { desired: { piota: { firmware: null } } } });
      report.desiredCleared.push(t.deviceId);
    } catch (err) {
      report.problems.push(`${t.deviceId}: ${(err as Error).message}`);
    }
  }
  return report;
}

