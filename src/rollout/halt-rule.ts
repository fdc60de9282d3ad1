import type { HaltRule } from './definition.js';

/** Devices by outcome over the waves started so far. */
export interface OutcomeCounts {
  succeeded: number;
  failed: number;
  /** Not reached: offline when their wave started (they may still apply later via desired properties). */
  offline: number;
  /** Reached and not finished yet. */
  running: number;
}

export interface HaltVerdict {
  halt: boolean;
  /** failed ÷ (failed + succeeded), or null when no device has finished. */
  failureRate: number | null;
  /** Why, in words (for the record and `status`). */
  reason: string;
}

/**
 * The halt rule, pure: failure rate = failed ÷ (failed + succeeded); offline and running devices
 * count for neither side. It fires when the rate reaches the threshold AND at least `minFailed`
 * devices failed (so one early failure in a canary of three does not stop a fleet, unless the
 * operator sets --halt-min-failed 1).
 */
export function haltVerdict(counts: OutcomeCounts, rule: HaltRule): HaltVerdict {
  const finished = counts.failed + counts.succeeded;
  const failureRate = finished === 0 ? null : counts.failed / finished;
  const pct = (r: number) => `${(r * 100).toFixed(1).replace(/\.0$/, '')}%`;
  if (failureRate === null) return { halt: false, failureRate, reason: 'no device has finished yet' };
  // A tiny epsilon so 1 of 20 reaches a 5 % threshold despite floating point.
  const reached = failureRate + 1e-12 >= rule.failureRate;
  const enough = counts.failed >= rule.minFailed;
  const figures = `${counts.failed} failed of ${finished} finished (${pct(failureRate)})`;
  if (reached && enough) return { halt: true, failureRate, reason: `${figures} reached --halt-failure-rate ${pct(rule.failureRate)} with at least ${rule.minFailed} failed` };
  if (reached) return { halt: false, failureRate, reason: `${figures}: at the rate, but fewer than --halt-min-failed ${rule.minFailed}` };
  return { halt: false, failureRate, reason: `${figures}: below ${pct(rule.failureRate)}` };
}
