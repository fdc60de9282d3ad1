import type { Clock } from './clock.js';

/**
 * What the daemon decided about the wall clock before connecting, reported in the twin
 * (`piota.clock`) and the log:
 * - `plausible`: the clock is not behind the persisted floor;
 * - `caughtUp`: it was behind, and moved past the floor while the daemon waited (NTP after boot);
 * - `synchronized`: the system reports a synchronised clock that is still behind the floor, so the
 *   floor was wrong (a clock once ahead) and is lowered to the synchronised time;
 * - `gaveUp`: neither happened within `clock.maxWaitSeconds`: the daemon connects anyway rather than
 *   stay off the hub (a wrong clock may make the hub refuse the SAS token; the link keeps retrying).
 */
export interface ClockDecision {
  decision: 'plausible' | 'caughtUp' | 'synchronized' | 'gaveUp';
  /** The floor the clock was compared with (ISO). */
  floor: string;
  /** The clock when the decision was made (ISO). */
  observed: string;
  waitedSeconds: number;
}

/** A clock within this of the floor counts as plausible: the floor may come from a clock that ran a little fast. */
export const FLOOR_SLACK_MS = 60_000;

/**
 * The plausible-clock floor: the newest time this device has good evidence for. A Pi has no RTC and
 * may boot in 1970 or, after a bad NTP or `date` reading, in 2040. The floor must keep the first out
 * (SAS tokens and timestamps would lie) and must never lock the device out after the second:
 * - it only advances to times backed by evidence: a synchronised clock, or, without one, the floor
 *   found at start plus the monotonic time this process has run (a wall clock that jumps ahead is
 *   never persisted);
 * - the wait for a plausible clock is bounded, ends when the system reports a synchronised clock,
 *   and can be aborted (SIGTERM).
 */
export class ClockFloor {
  private floor: number;
  private readonly startFloor: number;
  private readonly startMonotonic: number;
  private lastDecision: ClockDecision | null = null;

  constructor(
    persistedFloor: number,
    private readonly clock: Clock,
  ) {
    this.floor = Number.isFinite(persistedFloor) && persistedFloor > 0 ? persistedFloor : 0;
    this.startFloor = this.floor;
    this.startMonotonic = clock.monotonic();
  }

  /** The decision made by the last waitForPlausible, or null before it ran. */
  get decision(): ClockDecision | null {
    return this.lastDecision;
  }

  /** The value to persist now: never ahead of the evidence, never below the floor already persisted. */
  current(): number {
    const now = this.clock.now();
    if (this.clock.synchronized()) {
      // A synchronised clock is the evidence; a floor ahead of it was wrong and is lowered.
      this.floor = now;
    } else {
      const bound = this.startFloor + (this.clock.monotonic() - this.startMonotonic);
      this.floor = Math.max(this.floor, Math.min(now, bound));
    }
    return this.floor;
  }

  /**
   * Waits (polling) until the clock is plausible, the system reports it synchronised, or `maxWaitMs`
   * passed. Rejects only when `signal` aborts.
   */
  async waitForPlausible(options: { maxWaitMs: number; pollMs?: number; signal: AbortSignal; onWait?: (floor: string, observed: string) => void }): Promise<ClockDecision> {
    const poll = options.pollMs ?? 2000;
    const started = this.clock.monotonic();
    const floorAtWait = this.floor;
    let waited = false;
    for (;;) {
      const now = this.clock.now();
      const elapsed = this.clock.monotonic() - started;
      let decision: ClockDecision['decision'] | null = null;
      if (now >= floorAtWait - FLOOR_SLACK_MS) decision = waited ? 'caughtUp' : 'plausible';
      else if (this.clock.synchronized()) decision = 'synchronized';
      else if (elapsed >= options.maxWaitMs) decision = 'gaveUp';
      if (decision) {
        if (decision === 'synchronized') this.floor = now;
        this.lastDecision = {
          decision,
          floor: new Date(floorAtWait).toISOString(),
          observed: new Date(now).toISOString(),
          waitedSeconds: Math.round(elapsed / 1000),
        };
        return this.lastDecision;
      }
      if (!waited) options.onWait?.(new Date(floorAtWait).toISOString(), new Date(now).toISOString());
      waited = true;
      await this.clock.sleep(Math.min(poll, Math.max(1, options.maxWaitMs - elapsed)), options.signal);
    }
  }
}
