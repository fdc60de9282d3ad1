import { formatWaves, parseWaves, type RolloutDefinition } from './definition.js';
import { RolloutError } from './errors.js';

export type RolloutState = 'running' | 'paused' | 'halted' | 'completed' | 'aborted';

export interface WaveRecord {
  /** 1-based, as the operator counts waves. */
  wave: number;
  /** Devices the rollout reaches once this wave has started (cumulative). */
  cumulativeSize: number;
  /** Devices tagged into this wave. */
  devices: number;
  /** pending → tagging → started → done (or skipped: it would add no device). */
  stage: 'pending' | 'tagging' | 'started' | 'done' | 'skipped';
  jobId: string | null;
  /** The wave's automatic device configuration (`--via configuration`), instead of a job. */
  configurationId?: string | null;
  startedAt: string | null;
  endedAt: string | null;
  endReason: string | null;
}

export interface Decision {
  at: string;
  what: string;
  why: string;
}

export interface ControllerLease {
  /** host:pid:random of the `run` or `start` process driving the rollout. */
  owner: string;
  /** Epoch ms; after it, the next `run` may take the rollout over. */
  expiresAt: number;
}

/** The rollout as IoT Hub keeps it (docs/rollouts.md, "Where the rollout lives"). */
export interface RolloutRecord {
  schema: 1;
  definition: RolloutDefinition;
  createdAt: string;
  /** Devices that matched the target when the rollout was created. */
  targetedDevices: number;
  state: RolloutState;
  /** Why the rollout is in its state (halt figures, who paused, …). */
  reason: string | null;
  waves: WaveRecord[];
  /** The last decisions, oldest first (at most DECISIONS_KEPT). */
  decisions: Decision[];
  controller: ControllerLease | null;
  /** Halt or abort clean-up (jobs cancelled, waiting devices sent firmwareUpdateCancel) finished. */
  cleanedUp: boolean;
}

export const DECISIONS_KEPT = 30;
export const RECORD_TAG = 'piotaRolloutRecord';

/** The registry identity that holds a rollout's record. */
export function recordDeviceId(name: string): string {
  return `piota-rollout.${name}`;
}

/**
 * The record as twin tags. IoT Hub tags hold objects, strings (up to 4 KB each), numbers and
 * booleans, and a patch merges (null deletes): lists become objects keyed by position, and every
 * key the record may drop (old decisions) is written as null.
 */
export function recordToTags(record: RolloutRecord, previous: RolloutRecord | null): Record<string, unknown> {
  const d = record.definition;
  const decisions: Record<string, unknown> = {};
  const first = Math.max(0, record.decisions.length - DECISIONS_KEPT);
  const kept = record.decisions.slice(first);
  kept.forEach((x, i) => (decisions[`d${i}`] = x));
  for (let i = kept.length; i < (previous?.decisions.length ?? 0) + 1 && i < DECISIONS_KEPT + 1; i++) decisions[`d${i}`] = null;
  const waves: Record<string, unknown> = {};
  record.waves.forEach((w) => (waves[`w${w.wave}`] = w));
  return {
    [RECORD_TAG]: {
      schema: record.schema,
      name: d.name,
      definition: {
        release: { fwPackageUri: d.release.fwPackageUri, version: d.release.version, sha256: d.release.sha256 ?? null, applyNow: d.release.applyNow },
        target: d.target,
        waves: formatWaves(d.waves),
        halt: d.halt,
        waveTimeoutMs: d.waveTimeoutMs,
        connectTimeoutS: d.connectTimeoutS,
        via: d.via,
      },
      createdAt: record.createdAt,
      targetedDevices: record.targetedDevices,
      state: record.state,
      reason: record.reason,
      waves,
      decisions,
      controller: record.controller,
      cleanedUp: record.cleanedUp,
    },
  };
}

/** Reads the record back from the holder's tags; null when the tags hold none. */
export function recordFromTags(tags: Record<string, unknown>): RolloutRecord | null {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- read from the hub: each field is converted below, and a missing one caught
  const raw = tags[RECORD_TAG] as Record<string, any> | undefined;
  if (!raw || typeof raw !== 'object') return null;
  if (raw.schema !== 1) throw new RolloutError('badRecord', `the rollout record has schema ${String(raw.schema)}; this piota reads schema 1 (upgrade piota)`);
  try {
    const def = raw.definition;
    const definition: RolloutDefinition = {
      name: String(raw.name),
      release: { fwPackageUri: def.release.fwPackageUri, version: def.release.version, ...(def.release.sha256 ? { sha256: def.release.sha256 } : {}), applyNow: !!def.release.applyNow },
      target: def.target,
      waves: parseWaves(def.waves),
      halt: { failureRate: Number(def.halt.failureRate), minFailed: Number(def.halt.minFailed) },
      waveTimeoutMs: Number(def.waveTimeoutMs),
      connectTimeoutS: Number(def.connectTimeoutS),
      via: def.via === 'configuration' ? 'configuration' : 'job',
    };
    const byKey = (o: Record<string, unknown> | undefined, prefix: string) =>
      Object.entries(o ?? {})
        .filter(([k, v]) => k.startsWith(prefix) && v !== null)
        .sort(([a], [b]) => Number(a.slice(1)) - Number(b.slice(1)))
        .map(([, v]) => v);
    const waves = (byKey(raw.waves, 'w') as WaveRecord[]).map((w) => ({
      wave: w.wave,
      cumulativeSize: w.cumulativeSize,
      devices: w.devices,
      stage: w.stage,
      jobId: w.jobId ?? null,
      configurationId: w.configurationId ?? null,
      startedAt: w.startedAt ?? null,
      endedAt: w.endedAt ?? null,
      endReason: w.endReason ?? null,
    }));
    return {
      schema: 1,
      definition,
      createdAt: raw.createdAt,
      targetedDevices: Number(raw.targetedDevices),
      state: raw.state,
      reason: raw.reason ?? null,
      waves,
      decisions: byKey(raw.decisions, 'd') as Decision[],
      controller: raw.controller && typeof raw.controller.owner === 'string' ? { owner: raw.controller.owner, expiresAt: Number(raw.controller.expiresAt) } : null,
      cleanedUp: !!raw.cleanedUp,
    };
  } catch (err) {
    if (err instanceof RolloutError) throw err;
    throw new RolloutError('badRecord', `the rollout record in the hub is damaged: ${(err as Error).message}`);
  }
}
