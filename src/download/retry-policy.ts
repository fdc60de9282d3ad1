/** How long to wait before a retry: the first delay, doubled each attempt, capped. */
export interface RetryPolicy {
  firstDelayMs: number;
  maxDelayMs: number;
}

/**
 * The delay before retry number `attempt` (1 = the first retry), with "equal jitter": a random
 * whole number of ms in [floor(ceiling/2), ceiling], where ceiling = min(maxDelayMs, firstDelayMs * 2^(attempt-1)).
 *
 * Why jitter: a CDN hiccup fails a whole fleet at once, and without jitter every device comes back
 * at the same instants, in lockstep, for every attempt. Why "equal" and not "full" jitter (a value
 * in [0, ceiling]): full jitter spreads a little wider, but can retry almost at once, which hits a
 * server that just answered 503 again before it had time to recover. Equal jitter keeps at least
 * half of the back-off for each device and still spreads the fleet over the other half.
 *
 * `random` returns a number in [0, 1) (Math.random by default; tests pass a seeded one).
 */
export function retryDelayMs(attempt: number, policy: RetryPolicy, random: () => number = Math.random): number {
  if (!Number.isInteger(attempt) || attempt < 1) throw new RangeError(`retry attempt must be an integer from 1 on, got ${attempt}`);
  const { firstDelayMs, maxDelayMs } = policy;
  if (!Number.isFinite(firstDelayMs) || firstDelayMs < 0) throw new RangeError(`firstDelayMs must be a finite number >= 0, got ${firstDelayMs}`);
  if (!Number.isFinite(maxDelayMs) || maxDelayMs < firstDelayMs) throw new RangeError(`maxDelayMs must be a finite number >= firstDelayMs (${firstDelayMs}), got ${maxDelayMs}`);
  // 2 ** 1100 is Infinity, which min() turns into the cap: no overflow for a large attempt.
  const ceiling = Math.min(maxDelayMs, firstDelayMs * 2 ** (attempt - 1));
  const r = Math.min(Math.max(random(), 0), 1); // a generator out of range must not break the bounds
  // floor, not round: a whole number of ms that never passes the ceiling (nor so maxDelayMs).
  return Math.floor(ceiling / 2 + r * (ceiling / 2));
}
