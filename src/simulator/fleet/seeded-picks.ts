import { createHash } from 'node:crypto';

export interface FleetRatios {
  failTrial: number;
  failDownload: number;
  offline: number;
}

export type FleetRole = 'healthy' | 'failTrial' | 'failDownload' | 'offline';

/**
 * Which device plays which part: exactly round(count × ratio) devices each, in disjoint sets, chosen
 * by a seeded shuffle (the same seed picks the same devices). Throws when the ratios are out of
 * [0, 1] or add up to more than 1.
 */
export function pickRoles(count: number, ratios: FleetRatios, seed: number): FleetRole[] {
  for (const [name, r] of Object.entries(ratios)) {
    if (!Number.isFinite(r) || r < 0 || r > 1) throw new Error(`the ${name} ratio must be between 0 and 1, got ${r}`);
  }
  const sizes = { failTrial: Math.round(count * ratios.failTrial), failDownload: Math.round(count * ratios.failDownload), offline: Math.round(count * ratios.offline) };
  // Checked on the ratios themselves (with room for rounding), not only on the rounded counts.
  if (ratios.failTrial + ratios.failDownload + ratios.offline > 1 + 1e-9 || sizes.failTrial + sizes.failDownload + sizes.offline > count) {
    throw new Error(`the fail-trial, fail-download and offline ratios pick disjoint devices and must add up to at most 1 (got ${ratios.failTrial + ratios.failDownload + ratios.offline})`);
  }
  // A seeded shuffle: the devices in the order of a hash of the seed and their index.
  const key = (i: number) => createHash('sha256').update(`${seed}:${i}`).digest('hex');
  const order = Array.from({ length: count }, (_, i) => ({ i, k: key(i) }))
    .sort((a, b) => (a.k < b.k ? -1 : 1))
    .map((e) => e.i);
  const roles: FleetRole[] = new Array<FleetRole>(count).fill('healthy');
  let next = 0;
  for (const role of ['failTrial', 'failDownload', 'offline'] as const) {
    for (let k = 0; k < sizes[role]; k++) roles[order[next++]] = role;
  }
  return roles;
}
