import type { Logger } from 'pino';

/**
 * A Pi has no real-time clock: until NTP syncs, it may believe it is hours or years in the past,
 * which makes SAS tokens invalid and timestamps lie. A clock earlier than the newest time this device
 * has persisted cannot be right; wait until it moves past it (checked every few seconds).
 */
export async function waitForPlausibleClock(newestPersisted: number, logger: Logger, pollMs = 5000): Promise<void> {
  // A little slack: the persisted time may come from a clock that ran slightly fast.
  const threshold = newestPersisted - 60_000;
  let warned = false;
  while (Date.now() < threshold) {
    if (!warned) {
      logger.warn({ now: new Date().toISOString(), notBefore: new Date(threshold).toISOString() }, 'the clock is behind the newest persisted time; waiting for time sync before connecting');
      warned = true;
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
  if (warned) logger.info('the clock is plausible now');
}
