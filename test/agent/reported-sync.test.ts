import { describe, it, expect } from 'vitest';
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

  it('coalesces progress to at most one patch per interval', async () => {
    const hub = sink(1);
    const state = { status: 'downloading', bytes: 0 };
    const sync = new ReportedSync(hub, () => ({ ...state }), { progressIntervalMs: 200, logger });
    sync.statusChanged();
    await sync.flush(1000);
    const before = hub.sent.length;
    const started = Date.now();
    while (Date.now() - started < 650) {
      state.bytes += 1000;
      sync.progressChanged();
      await new Promise((r) => setTimeout(r, 5));
    }
    await new Promise((r) => setTimeout(r, 250));
    const progressPatches = hub.sent.length - before;
    // ~100 progress changes in 650 ms at one patch per 200 ms: 3 to 4 patches, the last one current.
    expect(progressPatches).toBeGreaterThanOrEqual(2);
    expect(progressPatches).toBeLessThanOrEqual(5);
    expect(hub.sent.at(-1)).toEqual({ ...state });
    sync.stop();
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
