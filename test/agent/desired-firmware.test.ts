import { describe, expect, it } from 'vitest';
import type { DeviceState } from '../../src/agent/device-state.js';
import { DesiredFirmwareTrigger, desiredFirmwareReport } from '../../src/agent/desired-firmware.js';
import { methodHandlers } from '../../src/agent/method-handlers.js';
import { UpdateDoor, type UpdateDriver } from '../../src/agent/update-door.js';
import { silentLogger, stateWith, updateIn } from './fakes/ports.js';

const uri = 'https://fw.example.com/fw-2.0.0.piota?sv=2024&sig=SECRET';
const release = (id: string, over: Record<string, unknown> = {}) => ({ piota: { firmware: { id, fwPackageUri: uri, version: '2.0.0', ...over } }, $version: 3 });

/** The trigger and the method handlers behind one door, on an in-memory state, a recording save and a fake runner. */
function device(state: DeviceState = stateWith(null), opts: { running?: string; failSaves?: number } = {}) {
  const saved: DeviceState[] = [];
  let failSaves = opts.failSaves ?? 0;
  const runner: UpdateDriver & { starts: number } = {
    starts: 0,
    start() {
      this.starts++;
    },
    cancel: async () => false,
  };
  let statusChanges = 0;
  const door = new UpdateDoor({
    state,
    bootedSlot: 'A',
    save: async (next) => {
      await new Promise((r) => setImmediate(r)); // a real save takes a while: let others interleave
      if (failSaves > 0) {
        failSaves--;
        throw new Error('ENOSPC: no space left on device');
      }
      saved.push(structuredClone(next));
    },
    statusChanged: () => void statusChanges++,
    flushReports: async () => true,
    runner,
    logger: silentLogger,
  });
  const trigger = new DesiredFirmwareTrigger({ state, door, runningVersion: () => opts.running ?? '1.0.0', statusChanged: () => void statusChanges++, logger: silentLogger });
  const methods = methodHandlers({ ...door.deps, door });
  /** Ends the current update as the runner would, then tells the trigger. */
  const endUpdate = async (phase: 'applyComplete' | 'applyFailed' = 'applyComplete') => {
    state.update!.phase = phase;
    await trigger.updateEnded();
  };
  return { state, saved, runner, trigger, methods, endUpdate, statusChanges: () => statusChanges };
}

describe('the desired-property trigger', () => {
  it('starts the release once per id, saved in the same write as the update; the same id again (reconnect, reboot) does nothing', async () => {
    const d = device();
    await d.trigger.desiredChanged(release('r1'));
    expect(d.runner.starts).toBe(1);
    const update = d.state.update!;
    expect(update).toMatchObject({ fwPackageUri: uri, expectedVersion: '2.0.0', phase: 'waiting' });
    // One write holds both: a power cut cannot leave the update without its desired id, or the reverse.
    expect(d.saved).toHaveLength(1);
    expect(d.saved[0].update?.updateId).toBe(update.updateId);
    expect(desiredFirmwareReport(d.saved[0])).toMatchObject({ desiredId: 'r1', updateId: update.updateId, decision: 'accepted' });
    await d.trigger.desiredChanged(release('r1'));
    await d.endUpdate();
    await d.trigger.desiredChanged(release('r1'));
    expect(d.runner.starts).toBe(1);
    expect(d.saved).toHaveLength(1);
    // A new id is a new release.
    await d.trigger.desiredChanged(release('r2', { fwPackageUri: 'https://fw.example.com/fw-3.piota', version: '3.0.0' }));
    expect(d.runner.starts).toBe(2);
    expect(desiredFirmwareReport(d.state)).toMatchObject({ desiredId: 'r2', updateId: d.state.update!.updateId });
  });

  it('the record survives a restart: a new trigger on the saved state does not apply the same id again', async () => {
    const first = device();
    await first.trigger.desiredChanged(release('r1'));
    await first.endUpdate();
    const restarted = device(structuredClone(first.saved.at(-1)!));
    await restarted.trigger.desiredChanged(release('r1'));
    expect(restarted.runner.starts).toBe(0);
  });

  it.each([
    ['no id', { fwPackageUri: uri, version: '2.0.0' }, /piota\.firmware\.id is missing/, null],
    ['a bad id', { id: 'a b', fwPackageUri: uri, version: '2.0.0' }, /piota\.firmware\.id must be/, null],
    ['no version', { id: 'r1', fwPackageUri: uri }, /piota\.firmware\.version is missing/, 'r1'],
    ['an http URI', { id: 'r1', fwPackageUri: 'http://fw.example.com/x', version: '2.0.0' }, /must be an https:\/\/ URL/, 'r1'],
    ['a bad sha256', { id: 'r1', fwPackageUri: uri, version: '2.0.0', sha256: 'abc' }, /sha256 must be 64 hexadecimal/, 'r1'],
    ['a string', 'https://fw.example.com/x', /piota\.firmware is "https/, null],
  ])('refuses a desired object with %s: reported with a message naming the field, nothing started, not refused twice', async (_name, firmware, message, id) => {
    const d = device();
    await d.trigger.desiredChanged({ piota: { firmware } });
    expect(d.state.update).toBeNull();
    expect(d.runner.starts).toBe(0);
    const record = desiredFirmwareReport(d.state)!;
    expect(record).toMatchObject({ desiredId: id, updateId: null, decision: 'refused' });
    expect(record.message).toMatch(message);
    expect(desiredFirmwareReport(d.saved[0])).toEqual(record);
    await d.trigger.desiredChanged({ piota: { firmware } });
    expect(d.saved).toHaveLength(1);
  });

  it('a release whose version is already running is recorded as alreadyRunning and never applied', async () => {
    const d = device(stateWith(null), { running: '2.0.0' });
    await d.trigger.desiredChanged(release('r1'));
    expect(d.state.update).toBeNull();
    expect(desiredFirmwareReport(d.state)).toMatchObject({ desiredId: 'r1', decision: 'alreadyRunning', updateId: null });
  });

  it('no release (never written, or removed with null) does nothing', async () => {
    const d = device();
    await d.trigger.desiredChanged({ $version: 1 });
    await d.trigger.desiredChanged({ piota: { firmware: null } });
    expect(d.saved).toHaveLength(0);
    expect(d.runner.starts).toBe(0);
  });

  it('a save that fails records nothing: the next desired change or reconnect tries again', async () => {
    const d = device(stateWith(null), { failSaves: 1 });
    await d.trigger.desiredChanged(release('r1'));
    expect(d.state.update).toBeNull();
    expect(desiredFirmwareReport(d.state)).toBeNull();
    await d.trigger.desiredChanged(release('r1'));
    expect(d.runner.starts).toBe(1);
    expect(desiredFirmwareReport(d.state)).toMatchObject({ desiredId: 'r1', decision: 'accepted' });
  });
});

describe('a method and a desired release never race', () => {
  it('the method first: it starts; the desired release waits and starts when that update ends', async () => {
    const d = device();
    const answer = d.methods.firmwareUpdate({ fwPackageUri: 'https://fw.example.com/hotfix.piota' });
    const desired = d.trigger.desiredChanged(release('r1'));
    expect((await answer).status).toBe(200);
    await desired;
    expect(d.runner.starts).toBe(1);
    expect(d.state.update!.fwPackageUri).toBe('https://fw.example.com/hotfix.piota');
    expect(desiredFirmwareReport(d.state)).toBeNull();
    await d.endUpdate('applyFailed');
    expect(d.runner.starts).toBe(2);
    expect(d.state.update!.fwPackageUri).toBe(uri);
    expect(desiredFirmwareReport(d.state)).toMatchObject({ desiredId: 'r1', updateId: d.state.update!.updateId });
  });

  it('the desired release first: it starts; the method is answered 409 naming the running update', async () => {
    const d = device();
    const desired = d.trigger.desiredChanged(release('r1'));
    const answer = d.methods.firmwareUpdate({ fwPackageUri: 'https://fw.example.com/hotfix.piota' });
    await desired;
    const a = await answer;
    expect(a.status).toBe(409);
    expect(a.payload).toMatchObject({ updateId: d.state.update!.updateId, status: 'waiting' });
    expect(d.runner.starts).toBe(1);
    expect(d.saved.filter((s) => s.update !== null)).toHaveLength(1);
  });

  it('many of each at once: exactly one update starts, and every caller is told which', async () => {
    const d = device();
    const calls = [];
    for (let i = 0; i < 5; i++) {
      calls.push(d.methods.firmwareUpdate({ fwPackageUri: `https://fw.example.com/m${i}.piota` }));
      void d.trigger.desiredChanged(release(`r${i}`, { fwPackageUri: `https://fw.example.com/d${i}.piota` }));
    }
    const answers = await Promise.all(calls);
    expect(answers[0].status).toBe(200);
    expect(answers.slice(1).every((a) => a.status === 409 && (a.payload as { updateId: string }).updateId === d.state.update!.updateId)).toBe(true);
    expect(d.runner.starts).toBe(1);
  });

  it('the method with the URI of the running desired release is told it is in progress (200, same updateId)', async () => {
    const d = device();
    await d.trigger.desiredChanged(release('r1'));
    const a = await d.methods.firmwareUpdate({ fwPackageUri: uri });
    expect(a).toMatchObject({ status: 200, payload: { updateId: d.state.update!.updateId } });
    expect(d.runner.starts).toBe(1);
  });

  it('a desired release with the URI of the running method update is adopted: its id recorded against that update', async () => {
    const d = device(stateWith(updateIn('downloading', { fwPackageUri: uri })));
    await d.trigger.desiredChanged(release('r1'));
    expect(d.runner.starts).toBe(0);
    expect(desiredFirmwareReport(d.state)).toMatchObject({ desiredId: 'r1', decision: 'accepted', updateId: d.state.update!.updateId });
  });
});
