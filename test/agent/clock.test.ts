import { describe, it, expect } from 'vitest';
import { ClockFloor } from '../../src/agent/clock-floor.js';
import { FakeClock } from './fakes/ports.js';

const DAY = 86_400_000;
const real = Date.parse('2026-11-29T12:00:00Z');
const signal = new AbortController().signal;

describe('the plausible-clock floor', () => {
  it('goes on at once when the clock is past the floor', async () => {
    const clock = new FakeClock(real);
    const floor = new ClockFloor(real - DAY, clock);
    const d = await floor.waitForPlausible({ maxWaitMs: 60_000, signal });
    expect(d.decision).toBe('plausible');
    expect(clock.naps).toEqual([]);
  });

  it('waits while the clock is behind the floor, and says so when it caught up', async () => {
    const clock = new FakeClock(real);
    const floor = new ClockFloor(real + 65_000, clock); // 65 s ahead: 5 s past the one-minute slack
    const d = await floor.waitForPlausible({ maxWaitMs: 60_000, pollMs: 1000, signal });
    expect(d.decision).toBe('caughtUp');
    expect(d.waitedSeconds).toBe(5);
  });

  it('1970 at boot: waits a bounded time, then connects anyway (gaveUp) rather than stay off the hub', async () => {
    const clock = new FakeClock(0);
    const floor = new ClockFloor(real, clock);
    const d = await floor.waitForPlausible({ maxWaitMs: 30_000, pollMs: 2000, signal });
    expect(d).toMatchObject({ decision: 'gaveUp', waitedSeconds: 30, observed: new Date(30_000).toISOString() });
  });

  it('a floor far ahead (a clock once set to 2040) ends the wait as soon as the system clock is synchronised, and is lowered', async () => {
    const clock = new FakeClock(real);
    const floor = new ClockFloor(Date.parse('2040-01-01T00:00:00Z'), clock);
    const waiting = floor.waitForPlausible({ maxWaitMs: 3_600_000, pollMs: 1000, signal });
    clock.sync = true;
    const d = await waiting;
    expect(d.decision).toBe('synchronized');
    expect(floor.current()).toBe(clock.now());
  });

  it('never persists a wall clock that ran ahead of the evidence', () => {
    const clock = new FakeClock(real);
    const floor = new ClockFloor(real, clock);
    clock.t = Date.parse('2040-01-01T00:00:00Z'); // a bad NTP answer or `date`
    clock.mono += 10_000; // ten seconds of real running
    expect(floor.current()).toBe(real + 10_000);
    clock.sync = true; // the same reading, now from a clock the system calls synchronised
    expect(floor.current()).toBe(clock.t);
  });

  it('a clock far behind is never persisted either: the floor never goes down without a synchronised clock', () => {
    const clock = new FakeClock(real - 365 * DAY);
    const floor = new ClockFloor(real, clock);
    clock.mono += 5000;
    expect(floor.current()).toBe(real);
  });

  it('stops waiting when the daemon stops (SIGTERM)', async () => {
    const clock = new FakeClock(0);
    const floor = new ClockFloor(real, clock);
    const stop = new AbortController();
    const waiting = floor.waitForPlausible({ maxWaitMs: 3_600_000, signal: stop.signal });
    stop.abort(new Error('stopping'));
    await expect(waiting).rejects.toThrow('stopping');
  });
});
