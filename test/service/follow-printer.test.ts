import { describe, it, expect } from 'vitest';
import { followPrinter, progressBar } from '../../src/service/follow-printer.js';

describe('trigger output', () => {
  const t = (s: number) => new Date(Date.UTC(2026, 10, 28, 8, 0, s)).toISOString();

  it('draws a live progress bar on a terminal, then moves on to a new line', () => {
    let out = '';
    const print = followPrinter({ json: false, tty: true, write: (s) => (out += s) });
    print({ event: 'status', time: t(0), status: 'downloading', updateId: 'u', waitingFor: null, applyAt: null, error: null });
    print({ event: 'progress', time: t(1), bytes: 1024 * 1024, totalBytes: 4 * 1024 * 1024, percent: 25 });
    print({ event: 'progress', time: t(2), bytes: 3 * 1024 * 1024, totalBytes: 4 * 1024 * 1024, percent: 75 });
    print({ event: 'status', time: t(3), status: 'downloadComplete', updateId: 'u', waitingFor: null, applyAt: null, error: null });
    expect(out).toContain('\r[######..................] 25%  1.0 MiB of 4.0 MiB');
    // The rate comes from the two progress events: 2 MiB in 1 s, 1 MiB left.
    expect(out).toContain('75%  3.0 MiB of 4.0 MiB  2.0 MiB/s  1 s left');
    expect(out.endsWith('left\u001b[K\n08:00:03  downloadComplete\n')).toBe(true);
  });

  it('prints plain lines, one per tenth, when stdout is not a terminal', () => {
    let out = '';
    const print = followPrinter({ json: false, tty: false, write: (s) => (out += s) });
    for (let p = 0; p <= 100; p += 5) print({ event: 'progress', time: t(p / 5), bytes: p, totalBytes: 100, percent: p });
    expect(out).not.toContain('\r');
    expect(out.trim().split('\n')).toHaveLength(11);
  });

  it('shows the maintenance window a device waits for', () => {
    let out = '';
    const print = followPrinter({ json: false, tty: false, write: (s) => (out += s) });
    print({ event: 'status', time: t(0), status: 'downloadComplete', updateId: 'u', waitingFor: 'applyWindow', applyAt: '2026-11-29T02:00:00.000Z', error: null });
    expect(out).toContain('downloadComplete (waiting for the maintenance window, opens 2026-11-29T02:00:00.000Z)');
  });

  it('writes one JSON object per event with --json', () => {
    let out = '';
    const print = followPrinter({ json: true, tty: true, write: (s) => (out += s) });
    print({ event: 'accepted', time: t(0), updateId: 'u', message: 'ok' });
    print({ event: 'result', time: t(1), result: 'applyComplete', exitCode: 0, updateId: 'u', message: 'done' });
    expect(out.trim().split('\n').map((l) => JSON.parse(l).event)).toEqual(['accepted', 'result']);
  });

  it('draws an empty bar when the total is unknown', () => {
    expect(progressBar(5000, null, 0)).toBe('[........................] 4.9 KiB');
  });
});
