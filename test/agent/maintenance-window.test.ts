import { describe, it, expect } from 'vitest';
import { MaintenanceSchedule, WindowScheduleError, systemTimeZone } from '../../src/agent/maintenance-window.js';

const at = (iso: string) => Date.parse(iso);
const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

function schedule(cron: string, durationMinutes: number, timeZone?: string): MaintenanceSchedule {
  return new MaintenanceSchedule({ cron, durationMinutes, ...(timeZone ? { timeZone } : {}) });
}

describe('maintenance window schedule', () => {
  it('"0 2 * * *" for 120 min in Europe/Berlin (CET, UTC+1 in November): open 02:00-04:00 local', () => {
    const s = schedule('0 2 * * *', 120, 'Europe/Berlin');
    expect(s.isOpen(at('2026-11-28T00:59:59Z'))).toBe(false); // 01:59:59 local
    expect(iso(s.nextOpening(at('2026-11-28T00:59:59Z')))).toBe('2026-11-28T01:00:00.000Z');
    expect(s.isOpen(at('2026-11-28T01:00:00Z'))).toBe(true);
    expect(s.isOpen(at('2026-11-28T02:59:59.999Z'))).toBe(true);
    expect(s.isOpen(at('2026-11-28T03:00:00Z'))).toBe(false); // 04:00 local: closed
    expect(iso(s.nextOpening(at('2026-11-28T03:00:00Z')))).toBe('2026-11-29T01:00:00.000Z');
    s.dispose();
  });

  it('follows the zone\'s summer time (CEST, UTC+2 in July)', () => {
    const s = schedule('0 2 * * *', 120, 'Europe/Berlin');
    expect(iso(s.nextOpening(at('2026-07-01T12:00:00Z')))).toBe('2026-07-02T00:00:00.000Z');
    expect(s.isOpen(at('2026-07-02T01:59:00Z'))).toBe(true);
    expect(s.isOpen(at('2026-07-02T02:00:00Z'))).toBe(false);
    s.dispose();
  });

  it('skips a local time that does not exist on the spring-forward day', () => {
    // 29 March 2026: Berlin clocks jump from 02:00 to 03:00, so 02:30 does not happen that day.
    const s = schedule('30 2 * * *', 10, 'Europe/Berlin');
    expect(iso(s.nextOpening(at('2026-03-28T12:00:00Z')))).toBe('2026-03-30T00:30:00.000Z');
    s.dispose();
  });

  it('uses a half-hour offset without summer time (Asia/Kolkata, UTC+05:30)', () => {
    const s = schedule('0 2 * * *', 60, 'Asia/Kolkata');
    expect(iso(s.nextOpening(at('2026-11-28T00:00:00Z')))).toBe('2026-11-28T20:30:00.000Z');
    expect(s.isOpen(at('2026-11-28T21:29:59Z'))).toBe(true);
    expect(s.isOpen(at('2026-11-28T21:30:00Z'))).toBe(false);
    s.dispose();
  });

  it('skips days that the day of week rules out (weekdays at 14:30 UTC; 28 Nov 2026 is a Saturday)', () => {
    const s = schedule('30 14 * * 1-5', 30, 'UTC');
    expect(s.isOpen(at('2026-11-28T14:45:00Z'))).toBe(false);
    expect(iso(s.nextOpening(at('2026-11-28T10:00:00Z')))).toBe('2026-11-30T14:30:00.000Z');
    expect(s.isOpen(at('2026-11-30T14:59:59Z'))).toBe(true);
    s.dispose();
  });

  it('takes a seconds field (six fields)', () => {
    const s = schedule('*/5 * * * * *', 1, 'UTC');
    expect(iso(s.nextOpening(at('2026-11-28T10:00:01.500Z')))).toBe('2026-11-28T10:00:05.000Z');
    expect(iso(s.nextOpening(at('2026-11-28T10:00:05.000Z')))).toBe('2026-11-28T10:00:10.000Z');
    const once = schedule('7 3 10 * * *', 1, 'UTC'); // 10:03:07 every day, open one minute
    expect(once.isOpen(at('2026-11-28T10:03:06.999Z'))).toBe(false);
    expect(once.isOpen(at('2026-11-28T10:03:07Z'))).toBe(true);
    expect(once.isOpen(at('2026-11-28T10:04:06.999Z'))).toBe(true);
    expect(once.isOpen(at('2026-11-28T10:04:07Z'))).toBe(false);
    s.dispose();
    once.dispose();
  });

  it('finds a window four years out (29 February) quickly, and says null for one not due within four years', () => {
    const s = schedule('0 0 29 2 *', 60, 'UTC');
    const started = performance.now();
    expect(iso(s.nextOpening(at('2026-11-28T00:00:00Z')))).toBe('2028-02-29T00:00:00.000Z');
    expect(performance.now() - started).toBeLessThan(3000);
    // node-cron needs day of month AND day of week: 29 February falls on a Monday next in 2044.
    const never = schedule('0 0 29 2 1', 60, 'UTC');
    expect(never.nextOpening(at('2026-11-28T00:00:00Z'))).toBeNull();
    s.dispose();
    never.dispose();
  });

  it('defaults to the system time zone', () => {
    const s = schedule('0 2 * * *', 60);
    expect(s.timeZone).toBe(systemTimeZone());
    s.dispose();
  });

  it.each([
    ['61 * * * *', undefined, /maintenanceWindow\.cron: '61 \* \* \* \*' is not a valid cron expression \(minute/],
    ['every night', undefined, /maintenanceWindow\.cron: 'every night'/],
    ['0 2 * * *', 'Mars/Olympus_Mons', /maintenanceWindow\.timeZone: 'Mars\/Olympus_Mons' is not a time zone/],
  ])('rejects cron %j in zone %j, naming the field', (cron, timeZone, message) => {
    expect(() => schedule(cron, 60, timeZone)).toThrow(WindowScheduleError);
    expect(() => schedule(cron, 60, timeZone)).toThrow(message);
  });
});
