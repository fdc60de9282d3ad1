import type { DeviceTwin, JobDeviceResult, RolloutHub } from './hub-port.js';
import { deviceOutcome, type DeviceOutcome } from './outcome.js';
import type { RolloutRecord, WaveRecord } from './record.js';

/** The tag a device carries while in a rollout: `tags.piota.rollout = {name, wave}`. */
export interface RolloutTag {
  name: string;
  wave: number;
}

export function rolloutTagOf(twin: DeviceTwin): RolloutTag | null {
  const piota = twin.tags.piota as Record<string, unknown> | undefined;
  const r = piota && typeof piota === 'object' ? (piota.rollout as Record<string, unknown> | undefined) : undefined;
  if (!r || typeof r !== 'object' || typeof r.name !== 'string' || typeof r.wave !== 'number') return null;
  return { name: r.name, wave: r.wave };
}

export function quoteLiteral(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

/** The query condition of the devices in a rollout (one wave of it, when given). */
export function inRolloutCondition(name: string, wave?: number): string {
  return `tags.piota.rollout.name = ${quoteLiteral(name)}${wave === undefined ? '' : ` AND tags.piota.rollout.wave = ${wave}`}`;
}

/** The id of the desired release a rollout writes for devices it could not reach (`properties.desired.piota.firmware.id`). */
export function desiredReleaseId(name: string): string {
  return `piota-rollout:${name}`;
}

/** The desired release this rollout wrote on the twin, if it did. */
export function hasDesiredRelease(twin: DeviceTwin, name: string): boolean {
  const piota = twin.desired.piota as Record<string, unknown> | undefined;
  const fw = piota && typeof piota === 'object' ? (piota.firmware as Record<string, unknown> | undefined) : undefined;
  return !!fw && typeof fw === 'object' && fw.id === desiredReleaseId(name);
}

/**
 * Through a configuration there is no job to say a device was not reached: a device that has not
 * acted on the desired release is offline while the hub shows it disconnected, or once the wave's
 * timeout passed without a word from it (never failed); it still applies the release when it
 * connects, and is counted from then on.
 */
function unreachedAsOffline(outcome: DeviceOutcome, twin: DeviceTwin, wave: WaveRecord, nowMs: number, waveTimeoutMs: number): DeviceOutcome {
  if (outcome.stage !== 'pending') return outcome;
  const timedOut = wave.startedAt !== null && nowMs - Date.parse(wave.startedAt) >= waveTimeoutMs;
  return /^disconnected$/i.test(twin.connectionState ?? '') || timedOut ? { ...outcome, stage: 'offline' } : outcome;
}

const FINAL_JOB_DEVICE = new Set(['completed', 'failed', 'canceled', 'cancelled']);

/**
 * Gathers the evidence for every device of a rollout: one twin query over the rollout's tag, and
 * each started wave's job results until they are all final (then they are kept and never asked
 * for again: a job's device results do not change once final). Queries are the scarcest quota on
 * S1, so this is the only place the rollout queries while it runs.
 */
export class EvidenceReader {
  private readonly finalResults = new Map<string, Map<string, JobDeviceResult>>();

  constructor(private readonly hub: RolloutHub) {}

  async read(record: RolloutRecord, nowMs = Date.now()): Promise<{ twins: DeviceTwin[]; outcomes: DeviceOutcome[] }> {
    const name = record.definition.name;
    const twins = (await this.hub.queryTwins(inRolloutCondition(name))).filter((t) => rolloutTagOf(t)?.name === name);
    const byWave = new Map<number, DeviceTwin[]>();
    for (const t of twins) {
      const w = rolloutTagOf(t)!.wave;
      byWave.set(w, [...(byWave.get(w) ?? []), t]);
    }
    const outcomes: DeviceOutcome[] = [];
    for (const wave of record.waves) {
      const members = byWave.get(wave.wave) ?? [];
      if (members.length === 0) continue;
      const results = wave.jobId ? await this.jobResults(wave.jobId, members) : new Map<string, JobDeviceResult>();
      for (const twin of members) {
        const outcome = deviceOutcome(twin, wave.wave, results.get(twin.deviceId), hasDesiredRelease(twin, name) ? desiredReleaseId(name) : null);
        outcomes.push(record.definition.via === 'configuration' ? unreachedAsOffline(outcome, twin, wave, nowMs, record.definition.waveTimeoutMs) : outcome);
      }
    }
    return { twins, outcomes };
  }

  private async jobResults(jobId: string, members: DeviceTwin[]): Promise<Map<string, JobDeviceResult>> {
    const known = this.finalResults.get(jobId) ?? new Map<string, JobDeviceResult>();
    if (members.every((t) => known.has(t.deviceId))) return known;
    const fresh = new Map((await this.hub.jobDeviceResults(jobId)).map((r) => [r.deviceId, r]));
    for (const [id, r] of fresh) if (FINAL_JOB_DEVICE.has(r.status)) known.set(id, r);
    this.finalResults.set(jobId, known);
    return new Map([...fresh, ...known]);
  }
}
