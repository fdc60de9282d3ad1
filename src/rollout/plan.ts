import { createHash } from 'node:crypto';
import type { WaveSpec } from './definition.js';

/**
 * The cumulative number of devices each wave reaches, out of `total` devices that matched the
 * target when the rollout started. A share rounds up (1 % of 50 devices is one canary, not none);
 * a count above the total is the total. Waves that would add no device keep their place (the
 * controller skips them), so wave numbers always mean what the operator typed.
 */
export function cumulativeWaveSizes(waves: WaveSpec[], total: number): number[] {
  return waves.map((w) => {
    if ('all' in w) return total;
    if ('count' in w) return Math.min(w.count, total);
    return Math.max(0, Math.min(total, Math.ceil((w.percent * total) / 100 - 1e-9)));
  });
}

/**
 * The order devices are picked in: by a hash of the rollout name and the device id. Stable (a
 * resumed rollout or a second workstation picks the same devices), independent of the registry's
 * own order (so the canary is not always `pi-1`), and different per rollout (so the same few
 * devices are not every rollout's canary).
 */
export function stableOrder(rolloutName: string, deviceIds: readonly string[]): string[] {
  const key = (id: string) => createHash('sha256').update(`${rolloutName}\0${id}`).digest('hex');
  return deviceIds
    .map((id) => ({ id, k: key(id) }))
    .sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : a.id < b.id ? -1 : 1))
    .map((e) => e.id);
}

/**
 * The devices that join at wave `index`: the next ones in the stable order among the candidates
 * (devices matching the target that are not in the rollout yet), enough to bring the rollout to
 * the wave's cumulative size.
 */
export function pickWave(rolloutName: string, candidates: readonly string[], alreadyInRollout: number, cumulativeSize: number): string[] {
  const want = Math.max(0, cumulativeSize - alreadyInRollout);
  return stableOrder(rolloutName, candidates).slice(0, want);
}
