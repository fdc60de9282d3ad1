import { describe, it, expect } from 'vitest';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { waitForPlausibleClock } from '../../src/agent/clock.js';

function capture() {
  const lines: string[] = [];
  const stream = new Writable({ write(chunk, _e, cb) { lines.push(chunk.toString()); cb(); } });
  return { logger: pino({ level: 'info' }, stream), lines };
}

describe('waitForPlausibleClock', () => {
  it('goes on at once when the clock is past the newest persisted time', async () => {
    const { logger, lines } = capture();
    const started = Date.now();
    await waitForPlausibleClock(Date.now() - 1000, logger, 10);
    expect(Date.now() - started).toBeLessThan(100);
    expect(lines).toHaveLength(0);
  });

  it('waits while the clock is behind what this device has already persisted, and says why', async () => {
    const { logger, lines } = capture();
    const started = Date.now();
    // Persisted 60.3 s ahead: the one-minute slack leaves 300 ms to wait.
    await waitForPlausibleClock(Date.now() + 60_300, logger, 20);
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(280);
    expect(lines.join('')).toContain('waiting for time sync before connecting');
    expect(lines.join('')).toContain('the clock is plausible now');
  });
});
