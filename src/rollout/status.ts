import { haltVerdict, type OutcomeCounts } from './halt-rule.js';
import { classOf, type DeviceOutcome, type DeviceStage } from './outcome.js';
import type { RolloutRecord, RolloutState, WaveRecord } from './record.js';

export const STAGES: readonly DeviceStage[] = ['pending', 'waiting', 'downloading', 'applying', 'applyComplete', 'applyFailed', 'downloadFailed', 'refused', 'offline'];

export interface WaveStatus extends OutcomeCounts {
  wave: number;
  stage: WaveRecord['stage'];
  devices: number;
  cumulativeSize: number;
  byStage: Record<DeviceStage, number>;
  jobId: string | null;
  /** The wave's automatic device configuration (`via: configuration`), else null. */
  configurationId: string | null;
  startedAt: string | null;
  endedAt: string | null;
  endReason: string | null;
}

/** `piota rollout status --json` (docs/rollouts.md, "status --json"). */
export interface RolloutStatus {
  name: string;
  state: RolloutState;
  reason: string | null;
  failureRate: number | null;
  release: { fwPackageUri: string; version: string; sha256: string | null };
  target: string;
  targetedDevices: number;
  via: 'job' | 'configuration';
  halt: { failureRate: number; minFailed: number; verdict: string };
  totals: OutcomeCounts & { devices: number; byStage: Record<DeviceStage, number> };
  waves: WaveStatus[];
  failedDevices: { deviceId: string; wave: number; stage: DeviceStage; code: string; message: string }[];
  offlineDevices: { deviceId: string; wave: number; viaDesired: boolean }[];
  controller: { owner: string; expiresAt: string; live: boolean } | null;
  decisions: RolloutRecord['decisions'];
}

function emptyStages(): Record<DeviceStage, number> {
  return Object.fromEntries(STAGES.map((s) => [s, 0])) as Record<DeviceStage, number>;
}

/** Counts outcomes the halt rule's way. */
export function countOutcomes(outcomes: readonly DeviceOutcome[]): OutcomeCounts {
  const c: OutcomeCounts = { succeeded: 0, failed: 0, offline: 0, running: 0 };
  for (const o of outcomes) c[classOf(o.stage)]++;
  return c;
}

/** The rollout's picture: the record (definition, waves, decisions) and the devices' evidence. */
export function rolloutStatus(record: RolloutRecord, outcomes: readonly DeviceOutcome[], now: number): RolloutStatus {
  const d = record.definition;
  const totals = { ...countOutcomes(outcomes), devices: outcomes.length, byStage: emptyStages() };
  for (const o of outcomes) totals.byStage[o.stage]++;
  const waves = record.waves.map((w): WaveStatus => {
    const mine = outcomes.filter((o) => o.wave === w.wave);
    const byStage = emptyStages();
    for (const o of mine) byStage[o.stage]++;
    return { wave: w.wave, stage: w.stage, devices: Math.max(w.devices, mine.length), cumulativeSize: w.cumulativeSize, ...countOutcomes(mine), byStage, jobId: w.jobId, configurationId: w.configurationId ?? null, startedAt: w.startedAt, endedAt: w.endedAt, endReason: w.endReason };
  });
  const verdict = haltVerdict(totals, d.halt);
  return {
    name: d.name,
    state: record.state,
    reason: record.reason,
    failureRate: verdict.failureRate,
    release: { fwPackageUri: d.release.fwPackageUri, version: d.release.version, sha256: d.release.sha256 ?? null },
    target: d.target,
    targetedDevices: record.targetedDevices,
    via: d.via,
    halt: { ...d.halt, verdict: verdict.reason },
    totals,
    waves,
    failedDevices: outcomes
      .filter((o) => classOf(o.stage) === 'failed')
      .map((o) => ({ deviceId: o.deviceId, wave: o.wave, stage: o.stage, code: o.error?.code ?? 'unknown', message: o.error?.message ?? '' }))
      .sort((a, b) => a.wave - b.wave || (a.deviceId < b.deviceId ? -1 : 1)),
    offlineDevices: outcomes.filter((o) => o.stage === 'offline').map((o) => ({ deviceId: o.deviceId, wave: o.wave, viaDesired: o.viaDesired })),
    controller: record.controller ? { owner: record.controller.owner, expiresAt: new Date(record.controller.expiresAt).toISOString(), live: record.controller.expiresAt > now } : null,
    decisions: record.decisions,
  };
}
