import { describe, it, expect } from 'vitest';
import type { DeviceState } from '../../src/agent/device-state.js';
import { methodHandlers, type UpdateDriver } from '../../src/agent/method-handlers.js';
import { PHASES, isCancellable, isTerminal } from '../../src/agent/workflow/spec.js';
import { silentLogger, stateWith, updateIn } from './fakes/ports.js';

/** The handlers on an in-memory state, a recording save and a fake runner. */
function handlersOn(state: DeviceState, opts: { failSave?: boolean; cancel?: boolean } = {}) {
  const saved: DeviceState[] = [];
  const runner: UpdateDriver & { starts: number; cancels: number } = {
    starts: 0,
    cancels: 0,
    start() {
      this.starts++;
    },
    async cancel() {
      this.cancels++;
      if (opts.cancel && state.update) state.update.phase = 'downloadFailed';
      return opts.cancel ?? false;
    },
  };
  const h = methodHandlers({
    state,
    bootedSlot: 'A',
    save: async (next) => {
      if (opts.failSave) throw new Error('ENOSPC: no space left on device');
      saved.push(structuredClone(next));
    },
    statusChanged: () => undefined,
    flushReports: async () => true,
    runner,
    logger: silentLogger,
  });
  return { h, runner, saved };
}

const uri = 'https://fw.example.com/fw-2.0.0.piota?sv=2024&sig=SECRET';

describe('firmwareUpdate', () => {
  it('accepts a valid payload: persisted first, then adopted, then the runner starts; 200 with the updateId', async () => {
    const state = stateWith(null);
    const { h, runner, saved } = handlersOn(state);
    const answer = await h.firmwareUpdate({ fwPackageUri: uri });
    expect(answer.status).toBe(200);
    const { updateId, message } = answer.payload as { updateId: string; message: string };
    expect(saved[0].update).toMatchObject({ updateId, phase: 'waiting', fromSlot: 'A', targetSlot: 'B', fwPackageUri: uri });
    expect(state.update?.updateId).toBe(updateId);
    expect(runner.starts).toBe(1);
    // The answer goes to whoever invoked the method: no SAS in it.
    expect(message).not.toContain('SECRET');
  });

  it('a save that fails leaves no update behind: the next request is accepted (no ghost)', async () => {
    const state = stateWith(null);
    const failing = handlersOn(state, { failSave: true });
    const first = await failing.h.firmwareUpdate({ fwPackageUri: uri });
    expect(first.status).toBe(500);
    expect((first.payload as { message: string }).message).toContain('ENOSPC');
    expect(state.update).toBeNull();
    expect(failing.runner.starts).toBe(0);
    const again = await handlersOn(state).h.firmwareUpdate({ fwPackageUri: uri });
    expect(again.status).toBe(200);
  });

  it('answers 400 naming the problem, and changes nothing', async () => {
    const state = stateWith(null);
    const { h, saved } = handlersOn(state);
    for (const payload of [{}, { fwPackageUri: 'http://insecure/x' }, { fwPackageUri: uri, version: 'a\nb' }, 42, null]) {
      const a = await h.firmwareUpdate(payload);
      expect(a.status, JSON.stringify(payload)).toBe(400);
      expect(typeof (a.payload as { message: unknown }).message).toBe('string');
    }
    expect(saved).toEqual([]);
    expect(state.update).toBeNull();
  });

  it.each(PHASES.filter((p) => !isTerminal(p)))('while an update is in %s: the same URI answers 200 with its updateId, another 409', async (phase) => {
    const state = stateWith(updateIn(phase, { fwPackageUri: uri }));
    const { h, saved } = handlersOn(state);
    const same = await h.firmwareUpdate({ fwPackageUri: uri });
    expect(same).toMatchObject({ status: 200, payload: { updateId: 'u1' } });
    const other = await h.firmwareUpdate({ fwPackageUri: 'https://fw.example.com/other.piota' });
    expect(other).toMatchObject({ status: 409, payload: { updateId: 'u1' } });
    expect((other.payload as { message: string }).message).not.toContain('SECRET');
    expect(saved).toEqual([]);
  });

  it.each(PHASES.filter(isTerminal))('after an update ended in %s, a new one is accepted', async (phase) => {
    const state = stateWith(updateIn(phase, { fwPackageUri: uri }));
    const { h } = handlersOn(state);
    const a = await h.firmwareUpdate({ fwPackageUri: uri });
    expect(a.status).toBe(200);
    expect((a.payload as { updateId: string }).updateId).not.toBe('u1');
  });
});

describe('firmwareUpdateCancel', () => {
  it('idle: 200 nothing to cancel', async () => {
    const { h, runner } = handlersOn(stateWith(null));
    expect(await h.firmwareUpdateCancel()).toMatchObject({ status: 200, payload: { message: 'nothing to cancel' } });
    expect(runner.cancels).toBe(0);
  });

  it.each(PHASES.filter((p) => !isTerminal(p)))('in %s: 200 "cancelled" only when the runner stopped it, else 409', async (phase) => {
    const state = stateWith(updateIn(phase));
    const { h } = handlersOn(state, { cancel: isCancellable(phase) });
    const a = await h.firmwareUpdateCancel();
    if (isCancellable(phase)) {
      expect(a).toMatchObject({ status: 200, payload: { message: 'cancelled', updateId: 'u1' } });
    } else {
      expect(a).toMatchObject({ status: 409, payload: { updateId: 'u1', status: expect.any(String) } });
    }
  });
});
