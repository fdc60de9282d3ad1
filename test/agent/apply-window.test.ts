import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { pino } from 'pino';
import { applyWindowGate, type WindowClock } from '../../src/agent/apply-window.js';
import { validateConfig, type DaemonConfig, type MaintenanceWindow } from '../../src/agent/config.js';
import type { DeviceState, Phase, UpdateRecord } from '../../src/agent/device-state.js';
import { methodHandlers } from '../../src/agent/method-handlers.js';
import { UpdateRunner } from '../../src/agent/workflow/runner.js';
import type { WorkflowPorts } from '../../src/agent/workflow/context.js';
import { FakeBoot, FakeClock as PortsClock, fakePorts } from './fakes/ports.js';

const logger = pino({ level: 'silent' });
const example = JSON.parse(readFileSync(new URL('../../config.example.json', import.meta.url), 'utf8'));

function config(maintenanceWindow: MaintenanceWindow | null): DaemonConfig {
  return validateConfig({ ...example, maintenanceWindow });
}

/** A clock that only moves when the gate sleeps: windows open without real waiting. */
class FakeClock implements WindowClock {
  naps: number[] = [];
  constructor(public t: number) {}
  now = () => this.t;
  sleep = async (ms: number, signal: AbortSignal) => {
    if (signal.aborted) throw signal.reason;
    this.naps.push(ms);
    this.t += ms;
  };
}

function update(phase: Phase, applyNow = false): UpdateRecord {
  return {
    updateId: 'u1', fwPackageUri: 'https://fw.example/1', pinnedSha256: null, expectedVersion: null, applyNow, phase,
    fromSlot: 'A', targetSlot: 'B', bundle: null, nextChunk: 0, bytesDownloaded: 0, error: null,
    times: { startedWaitingTime: '2026-11-28T00:00:00.000Z', startedDownloadingTime: null, downloadCompleteTime: null, startedApplyingImage: null, lastFirmwareUpdate: null },
    trialStartedAt: null, entries: { [phase]: 1 },
  };
}

const berlinNights = { cron: '0 2 * * *', durationMinutes: 120, timeZone: 'Europe/Berlin' };

describe('the apply-window gate', () => {
  it('waits until the window opens (02:00 Berlin = 01:00Z in November), never napping over a minute', async () => {
    const clock = new FakeClock(Date.parse('2026-11-27T12:00:00Z'));
    const gate = applyWindowGate(config(berlinNights), logger, clock);
    expect(gate.applyAt(update('downloadComplete'))).toBe('2026-11-28T01:00:00.000Z');
    await gate.waitUntilOpen(update('downloadComplete'), new AbortController().signal);
    expect(new Date(clock.t).toISOString()).toBe('2026-11-28T01:00:00.000Z');
    expect(Math.max(...clock.naps)).toBeLessThanOrEqual(60_000);
    expect(gate.applyAt(update('downloadComplete'))).toBeNull(); // open now: nothing to wait for
    gate.stop();
  });

  it('lets an update through at once inside the window, with "applyWindow": "now", or without a window', async () => {
    const inside = new FakeClock(Date.parse('2026-11-28T02:30:00Z'));
    const gate = applyWindowGate(config(berlinNights), logger, inside);
    await gate.waitUntilOpen(update('downloadComplete'), new AbortController().signal);
    expect(inside.naps).toEqual([]);
    gate.stop();

    const outside = new FakeClock(Date.parse('2026-11-28T12:00:00Z'));
    const nowGate = applyWindowGate(config(berlinNights), logger, outside);
    await nowGate.waitUntilOpen(update('downloadComplete', true), new AbortController().signal);
    expect(outside.naps).toEqual([]);
    expect(nowGate.applyAt(update('downloadComplete', true))).toBeNull();
    nowGate.stop();

    const none = applyWindowGate(config(null), logger, outside);
    await none.waitUntilOpen(update('downloadComplete'), new AbortController().signal);
    expect(none.applyAt(update('downloadComplete'))).toBeNull();
    expect(outside.naps).toEqual([]);
  });

  it('reports applyAt only while the update waits in downloadComplete', () => {
    const gate = applyWindowGate(config(berlinNights), logger, new FakeClock(Date.parse('2026-11-28T12:00:00Z')));
    for (const phase of ['waiting', 'downloading', 'verifying', 'applyComplete'] as Phase[]) expect(gate.applyAt(update(phase)), phase).toBeNull();
    expect(gate.applyAt(update('downloadComplete'))).toBe('2026-11-29T01:00:00.000Z');
    gate.stop();
  });

  it('stops waiting when the signal aborts (a cancel)', async () => {
    // The real clock, and a window 12 hours away from now, so the wait is hours long whenever this runs
    // (a fixed window failed the test while it happened to be open).
    const farHour = (new Date().getUTCHours() + 12) % 24;
    const gate = applyWindowGate(config({ cron: `0 ${farHour} * * *`, durationMinutes: 60, timeZone: 'UTC' }), logger);
    const abort = new AbortController();
    const waiting = gate.waitUntilOpen(update('downloadComplete'), abort.signal);
    abort.abort(new Error('cancelled'));
    await expect(waiting).rejects.toThrow('cancelled');
    gate.stop();
  });
});

describe('cancelling around the window', () => {
  function runnerFor(state: DeviceState, applyWindowOpen: WorkflowPorts['applyWindowOpen']) {
    let saves = 0;
    const runner = new UpdateRunner({
      state,
      saveState: async () => void saves++,
      statusChanged: () => undefined,
      refreshInventory: async () => undefined,
      logger,
      settings: { config: config(berlinNights), trustedKeys: [] },
      ports: fakePorts({ boot: new FakeBoot(), clock: new PortsClock(), applyWindowOpen }),
    });
    return { runner, saves: () => saves };
  }

  it('cancels an update waiting for its window: downloadFailed/cancelled', async () => {
    const state: DeviceState = { slots: { A: { version: '1.0.0', sha256: 'a'.repeat(64), securityVersion: 0, installedAt: '2026-01-01T00:00:00Z' }, B: null }, update: update('downloadComplete'), newestTimestamp: 0, recovery: null };
    const gate = applyWindowGate(config(berlinNights), logger, new FakeClock(Date.parse('2026-11-28T12:00:00Z')));
    let entered!: () => void;
    const waitingForWindow = new Promise<void>((r) => (entered = r));
    const { runner } = runnerFor(state, (u, signal) => {
      entered();
      return new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
    });
    runner.start(true);
    await waitingForWindow;
    expect(gate.applyAt(state.update!)).toBe('2026-11-29T01:00:00.000Z');
    expect(await runner.cancel()).toBe(true);
    await runner.stop();
    expect(state.update!.phase).toBe('downloadFailed');
    expect(state.update!.error).toMatchObject({ code: 'cancelled' });
    gate.stop();
  });

  it.each(['verifying', 'rebooting', 'checkingBoot', 'trial', 'committing'] as Phase[])('refuses a cancel in %s (applying has started) with 409', async (phase) => {
    const state: DeviceState = { slots: { A: null, B: null }, update: update(phase), newestTimestamp: 0, recovery: null };
    const { runner } = runnerFor(state, async () => undefined);
    expect(await runner.cancel()).toBe(false);
    const handlers = methodHandlers({ state, bootedSlot: 'A', save: async () => undefined, statusChanged: () => undefined, flushReports: async () => true, runner, logger });
    const answer = await handlers.firmwareUpdateCancel();
    expect(answer.status).toBe(409);
    expect(answer.payload).toMatchObject({ updateId: 'u1', status: 'applying' });
    expect(state.update!.phase).toBe(phase);
  });
});
