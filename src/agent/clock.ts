import { existsSync } from 'node:fs';

/**
 * Time as the agent sees it. The daemon uses the system's; tests pass a fake one, since the test
 * machine's clock cannot be set (far ahead, far behind, 1970 at boot).
 */
export interface Clock {
  /** Wall-clock ms (may be wrong: a Pi has no RTC). */
  now(): number;
  /** ms from an arbitrary start that never jumps (the wall clock can). */
  monotonic(): number;
  sleep(ms: number, signal: AbortSignal): Promise<void>;
  /** The system says its clock is synchronised (systemd-timesyncd's flag file). */
  synchronized(): boolean;
}

/** systemd-timesyncd creates this file once it has synchronised the clock (and removes it at boot). */
export const TIMESYNC_FLAG = '/run/systemd/timesync/synchronized';

export function systemClock(syncFlagFile: string = TIMESYNC_FLAG): Clock {
  return {
    now: () => Date.now(),
    monotonic: () => performance.now(),
    sleep,
    synchronized: () => existsSync(syncFlagFile),
  };
}

/** Resolves after `ms`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
