/** mulberry32: a small seeded generator of numbers in [0, 1), so a seed replays the same fleet. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

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
  if (sizes.failTrial + sizes.failDownload + sizes.offline > count) {
    throw new Error(`the fail-trial, fail-download and offline ratios pick disjoint devices and must add up to at most 1 (got ${ratios.failTrial + ratios.failDownload + ratios.offline})`);
  }
  const order = Array.from({ length: count }, (_, i) => i);
  const random = seededRandom(seed);
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const roles: FleetRole[] = new Array<FleetRole>(count).fill('healthy');
  let next = 0;
  for (const role of ['failTrial', 'failDownload', 'offline'] as const) {
    for (let k = 0; k < sizes[role]; k++) roles[order[next++]] = role;
  }
  return roles;
}
