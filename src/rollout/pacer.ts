import { HubCallError } from './hub-port.js';
import { TIER_LIMITS, type OperationClass, type Tier } from './tier-limits.js';

/**
 * Keeps the rollout's calls under the tier's throttles (a token bucket per operation class, at a
 * share of the limit so the rest of the hub's users keep theirs) and retries a 429 with a growing,
 * jittered delay instead of failing: IoT Hub says to back off and retry, and a throttled call is
 * never a device failure.
 */
export interface Pacer {
  /** Waits until a call of this class may go out. */
  take(op: OperationClass): Promise<void>;
  /** Runs `call` after `take(op)`, again after a back-off for each 429, up to `maxThrottled` times. */
  run<T>(op: OperationClass, call: () => Promise<T>): Promise<T>;
  /** Calls made and 429s met, by class (the benchmark and `--verbose` print them). */
  readonly stats: Record<string, { calls: number; throttled: number }>;
}

export interface PacerOptions {
  tier: Tier;
  /** The share of each limit this program uses (default 0.5: a status --watch and other tools share the rest). */
  share?: number;
  maxThrottled?: number;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
  random?: () => number;
}

export function createPacer(options: PacerOptions): Pacer {
  const limits = TIER_LIMITS[options.tier].perSecond;
  const share = options.share ?? 0.5;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const now = options.now ?? Date.now;
  const random = options.random ?? Math.random;
  const maxThrottled = options.maxThrottled ?? 12;
  // Each class's next free slot: calls are spaced evenly (a bucket of one), which is what a
  // per-minute throttle with traffic shaping rewards.
  const nextFree = new Map<OperationClass, number>();
  const stats: Pacer['stats'] = {};
  const stat = (op: string) => (stats[op] ??= { calls: 0, throttled: 0 });

  async function take(op: OperationClass): Promise<void> {
    const interval = 1000 / (limits[op] * share);
    const t = now();
    const slot = Math.max(t, nextFree.get(op) ?? 0);
    nextFree.set(op, slot + interval);
    if (slot > t) await sleep(slot - t);
    stat(op).calls++;
  }

  async function run<T>(op: OperationClass, call: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      await take(op);
      try {
        return await call();
      } catch (err) {
        if (!(err instanceof HubCallError) || err.kind !== 'throttled' || attempt >= maxThrottled) throw err;
        stat(op).throttled++;
        // 1 s doubling to 60 s, with full jitter so two controllers do not retry in step; and the
        // class's next slot moves back too, so the calls queued behind this one wait as well.
        const delay = Math.min(60_000, 1000 * 2 ** attempt) * (0.5 + random() / 2);
        nextFree.set(op, Math.max(nextFree.get(op) ?? 0, now() + delay));
      }
    }
  }

  return { take, run, stats };
}
