import { HubError } from './errors.js';
import type { JsonObject } from './twin.js';

export const TIERS = ['free', 'S1', 'S2', 'S3'] as const;
export type Tier = (typeof TIERS)[number];

/** The operation families IoT Hub throttles (its quotas-and-throttling table), as the emulator counts them. */
export const CATEGORIES = [
  'registry',
  'newConnections',
  'deviceToCloud',
  'directMethods',
  'queries',
  'twinReads',
  'twinUpdates',
  'jobs',
  'jobDeviceOperations',
  'configurations',
] as const;
export type Category = (typeof CATEGORIES)[number];

/** The meter of the direct-methods throttle: every started 4 KB of payload is one unit. */
export const METHOD_METER_BYTES = 4096;

/**
 * Per-second rates for `units` units of a tier, from IoT Hub's quotas and throttling table
 * (the free tier has S1's limits). Direct methods are in 4 KB meter units (160 KB/s/unit on S1
 * is 40 small calls a second).
 */
export function tierLimits(tier: Tier, units: number): Record<Category, number> {
  const u = units;
  switch (tier) {
    case 'free':
    case 'S1':
      return {
        registry: (100 / 60) * u,
        newConnections: Math.max(100, 12 * u),
        deviceToCloud: Math.max(100, 12 * u),
        directMethods: 40 * u,
        queries: (20 / 60) * u,
        twinReads: 100,
        twinUpdates: 50,
        jobs: (100 / 60) * u,
        jobDeviceOperations: 10,
        configurations: (20 / 60) * u,
      };
    case 'S2':
      return {
        registry: (100 / 60) * u,
        newConnections: 120 * u,
        deviceToCloud: 120 * u,
        directMethods: 120 * u,
        queries: (20 / 60) * u,
        twinReads: Math.max(100, 10 * u),
        twinUpdates: Math.max(50, 5 * u),
        jobs: (100 / 60) * u,
        jobDeviceOperations: Math.max(10, u),
        configurations: (20 / 60) * u,
      };
    case 'S3':
      return {
        registry: (5000 / 60) * u,
        newConnections: 6000 * u,
        deviceToCloud: 6000 * u,
        directMethods: 6144 * u,
        queries: (1000 / 60) * u,
        twinReads: 500 * u,
        twinUpdates: 250 * u,
        jobs: (5000 / 60) * u,
        jobDeviceOperations: 50 * u,
        configurations: (20 / 60) * u,
      };
  }
}

/** IoT Hub's "Other limits": jobs that may be queued, scheduled or running at once. */
export function maxActiveJobs(tier: Tier | undefined): number {
  if (tier === undefined) return Infinity;
  return tier === 'S3' ? 10 : tier === 'S2' ? 5 : 1;
}

/** Automatic device configurations a hub may hold. */
export function maxConfigurations(tier: Tier | undefined): number {
  return tier === 'free' ? 20 : 100;
}

/** How many whole seconds of per-second counts are kept for the statistics. */
const WINDOW = 60;

class Counter {
  admitted = 0;
  throttled = 0;
  delayed = 0;
  peakPerSecond = 0;
  private readonly seconds = new Map<number, number>();

  count(now: number, cost: number): void {
    this.admitted += cost;
    const s = Math.floor(now / 1000);
    const n = (this.seconds.get(s) ?? 0) + cost;
    this.seconds.set(s, n);
    // Only whole seconds count towards the peak: the current one is still filling.
    for (const k of this.seconds.keys()) {
      if (k < s) this.peakPerSecond = Math.max(this.peakPerSecond, this.seconds.get(k)!);
      if (k <= s - WINDOW) this.seconds.delete(k);
    }
  }

  /** The most admitted in one whole second (the current second is still filling). */
  peak(now: number): number {
    const s = Math.floor(now / 1000);
    let peak = this.peakPerSecond;
    for (const [k, n] of this.seconds) if (k < s) peak = Math.max(peak, n);
    return peak;
  }

  /** Mean rate over the last `span` whole seconds. */
  recent(now: number, span = 10): number {
    const s = Math.floor(now / 1000);
    let sum = 0;
    for (const [k, n] of this.seconds) if (k < s && k >= s - span) sum += n;
    return sum / span;
  }
}

/**
 * A token bucket per category: it refills at the tier's rate and holds at most one second of
 * it (at least one token). Service calls take a token or are refused with 429
 * ThrottlingException; device-side operations and a job's device operations wait their turn
 * instead (IoT Hub shapes traffic before it rejects it). Without a tier nothing is limited, and
 * everything is still counted, so a benchmark can compare its rates with a tier's limits.
 */
export class Throttle {
  private readonly limits: Record<Category, number> | undefined;
  private readonly tokens = new Map<Category, { level: number; at: number }>();
  private readonly counters = new Map<Category, Counter>();
  private readonly waits = new Set<{ timer: NodeJS.Timeout; resolve(): void }>();
  private readonly since: number;

  constructor(
    readonly tier: Tier | undefined,
    readonly units = 1,
    private readonly now: () => number = Date.now,
  ) {
    this.limits = tier ? tierLimits(tier, units) : undefined;
    this.since = now();
    for (const c of CATEGORIES) this.counters.set(c, new Counter());
  }

  limit(category: Category): number | undefined {
    return this.limits?.[category];
  }

  private capacity(category: Category): number {
    return Math.max(1, this.limits![category]);
  }

  /** The bucket's level now (refilled for the time since it was last looked at). */
  private level(category: Category, now: number): { level: number; at: number } {
    const cap = this.capacity(category);
    const b = this.tokens.get(category) ?? { level: cap, at: now };
    b.level = Math.min(cap, b.level + ((now - b.at) / 1000) * this.limits![category]);
    b.at = now;
    this.tokens.set(category, b);
    return b;
  }

  /** A service call: admitted, or refused with 429 ThrottlingException. */
  take(category: Category, cost = 1): void {
    const now = this.now();
    const counter = this.counters.get(category)!;
    if (this.limits) {
      const b = this.level(category, now);
      if (b.level < Math.min(cost, this.capacity(category))) {
        counter.throttled += 1;
        throw new HubError(
          'ThrottlingException',
          `Throttling: the ${this.tier} tier allows ${formatRate(this.limits[category])} ${category} operations; retry later`,
        );
      }
      b.level -= cost;
    }
    counter.count(now, cost);
  }

  /** Waits until the operation fits the tier's rate (never refuses). Resolves at once without a tier. */
  async acquire(category: Category, cost = 1): Promise<void> {
    const counter = this.counters.get(category)!;
    if (this.limits) {
      const now = this.now();
      const b = this.level(category, now);
      b.level -= cost;
      if (b.level < 0) {
        counter.delayed += 1;
        const ms = (-b.level / this.limits[category]) * 1000;
        await new Promise<void>((resolve) => {
          const wait = {
            timer: setTimeout(() => {
              this.waits.delete(wait);
              resolve();
            }, ms),
            resolve,
          };
          this.waits.add(wait);
        });
      }
    }
    counter.count(this.now(), cost);
  }

  /** Counts an operation the emulator does not limit (device connections, device-to-cloud messages). */
  note(category: Category): void {
    this.counters.get(category)!.count(this.now(), 1);
  }

  /** Releases every waiting operation (the hub is closing). */
  close(): void {
    for (const w of this.waits) {
      clearTimeout(w.timer);
      w.resolve();
    }
    this.waits.clear();
  }

  /** What `GET /emulator/stats` answers. */
  stats(): JsonObject {
    const now = this.now();
    const categories: JsonObject = {};
    for (const c of CATEGORIES) {
      const k = this.counters.get(c)!;
      categories[c] = {
        limitPerSecond: this.limits ? round(this.limits[c]) : null,
        admitted: k.admitted,
        throttled: k.throttled,
        delayed: k.delayed,
        peakPerSecond: k.peak(now),
        recentPerSecond: round(k.recent(now)),
      };
    }
    return {
      tier: this.tier ?? null,
      units: this.units,
      maxActiveJobs: this.tier ? maxActiveJobs(this.tier) : null,
      since: new Date(this.since).toISOString(),
      categories,
    };
  }
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}

function formatRate(perSecond: number): string {
  return perSecond >= 1 ? `${round(perSecond)}/s` : `${Math.round(perSecond * 60)}/min`;
}
