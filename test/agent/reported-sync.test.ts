import { describe, it, expect, vi } from 'vitest';
import { pino } from 'pino';
import { ReportedSync, type ReportedSink } from '../../src/agent/reported-sync.js';

const logger = pino({ level: 'silent' });

/** A sink that records patches and acknowledges after `delayMs` (or refuses while `down`). */
function sink(delayMs = 5) {
  const sent: Record<string, unknown>[] = [];
  const s = {
    connected: true,
    down: false,
    sent,
    async updateReported(patch: Record<string, unknown>) {
      await new Promise((r) => setTimeout(r, delayMs));
      if (s.down) return false;
      sent.push(structuredClone(patch));
      return true;
    },
  };
  return s as ReportedSink & typeof s;
}

describe('ReportedSync', () => {
  it('sends a status change at once and resolves flush when the hub acknowledged it', async () => {
    const hub = sink();
    const state = { status: 'waiting', bytes: 0 };
    const sync = new ReportedSync(hub, () => ({ ...state }), { progressIntervalMs: 1000, logger });
    state.status = 'downloading';
    sync.statusChanged();
    expect(await sync.flush(1000)).toBe(true);
    expect(hub.sent.at(-1)).toEqual({ status: 'downloading', bytes: 0 });
    sync.stop();
  });

  it('coalesces progress to at most one patch per interval (on a fake clock)', async () => {
    vi.useFakeTimers();
    try {
      const sentAt: number[] = [];
      const hub = sink(1);
      const original = hub.updateReported.bind(hub);
      hub.updateReported = async (patch) => {
        sentAt.push(Date.now());
        return original(patch);
      };
      const state = { status: 'downloading', bytes: 0 };
      const sync = new ReportedSync(hub, () => ({ ...state }), { progressIntervalMs: 200, logger });
      sync.statusChanged();
      await vi.advanceTimersByTimeAsync(10);
      const before = hub.sent.length;
      for (let i = 0; i < 100; i++) {
        state.bytes += 1000;
        sync.progressChanged();
        await vi.advanceTimersByTimeAsync(6.5);
      }
      await vi.advanceTimersByTimeAsync(250);
      // 100 progress changes over 650 ms at one patch per 200 ms: the patches are at least 200 ms
      // apart, there are 3 or 4 of them, and the last one is the current picture.
      const progressTimes = sentAt.slice(before);
      expect(progressTimes.length).toBeGreaterThanOrEqual(3);
      expect(progressTimes.length).toBeLessThanOrEqual(4);
      for (let i = 1; i < sentAt.length; i++) expect(sentAt[i] - sentAt[i - 1]).toBeGreaterThanOrEqual(200);
      expect(hub.sent.at(-1)).toEqual({ ...state });
      sync.stop();
    } finally {
      vi.useRealTimers();
    }
  });

  it('keeps a status reached while the hub is down and sends it when the link is back', async () => {
    const hub = sink();
    const state = { status: 'downloading' };
    const sync = new ReportedSync(hub, () => ({ ...state }), { progressIntervalMs: 1000, logger });
    hub.down = true;
    state.status = 'applyComplete';
    sync.statusChanged();
    expect(await sync.flush(200)).toBe(false);
    expect(hub.sent).toHaveLength(0);
    hub.down = false;
    sync.linkUp();
    expect(await sync.flush(1000)).toBe(true);
    expect(hub.sent).toEqual([{ status: 'applyComplete' }]);
    sync.stop();
  });

  it('sends nothing while disconnected, everything again after a reconnect', async () => {
    const hub = sink();
    const sync = new ReportedSync(hub, () => ({ status: 'idle' }), { progressIntervalMs: 1000, logger });
    sync.statusChanged();
    await sync.flush(1000);
    expect(hub.sent).toHaveLength(1);
    hub.connected = false;
    sync.statusChanged();
    await new Promise((r) => setTimeout(r, 50));
    expect(hub.sent).toHaveLength(1);
    hub.connected = true;
    sync.linkUp(); // the hub may have lost what it had: the same picture goes again
    await sync.flush(1000);
    expect(hub.sent).toHaveLength(2);
    sync.stop();
  });
});
