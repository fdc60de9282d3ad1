import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { World, waitFor, type SimulatedPi } from './world.js';

// The daemon always comes up and reaches the hub, whatever its state directory holds, and SIGTERM
// ends it within 2 s in the long phases of an update, which then resume at the next start.
let world: World;
beforeAll(async () => {
  world = await World.create();
}, 60_000);
afterAll(() => world?.close());

/** Replaces the state files while the daemon is frozen, then cuts the power: the next boot starts on them. */
async function bootWithState(pi: SimulatedPi, current: string | null, previous: string | null): Promise<void> {
  const before = (await pi.sim()).bootCount;
  const pid = await pi.freeze();
  const data = join(pi.dir, 'data');
  const { rm } = await import('node:fs/promises');
  for (const [name, text] of [['state.json', current], ['state.json.prev', previous]] as const) {
    if (text === null) await rm(join(data, name), { force: true });
    else await writeFile(join(data, name), text);
  }
  await pi.cutFrozen(pid!, before);
}

/** SIGTERM to the running daemon; ms until it has exited. */
async function sigterm(pi: SimulatedPi): Promise<number> {
  const pid = (await pi.sim()).daemonPid!;
  const sent = performance.now();
  process.kill(pid, 'SIGTERM');
  await waitFor('the daemon to exit', async () => {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  }, 10_000);
  return performance.now() - sent;
}

describe('a damaged state directory', () => {
  const newer = JSON.stringify({ schema: 7, writtenBy: 'piota 9.0.0', data: { slots: { A: null, B: null }, update: null, newestTimestamp: 0, fleet: { ring: 2 } } });
  const cases: [string, string | null, string | null, string | null][] = [
    // name, state.json, state.json.prev, expected restoredFrom (null: no recovery)
    ['truncated, with a good previous generation', '{"schema":2,"data":{"slots":{"A":nu', 'GOOD', 'previous'],
    ['empty, nothing before it', '', null, 'rebuilt'],
    ['garbage in both generations', '\u0000\u0001binary', 'not json', 'rebuilt'],
    ['from a newer agent (schema 7, unknown fields)', newer, null, null],
    ['missing', null, null, null],
  ];

  it.each(cases)('%s: the daemon comes up, reaches the hub and reports what it did', async (name, current, previous, restoredFrom) => {
    const id = `state-${cases.findIndex((c) => c[0] === name)}`;
    const pi = await world.pi(id);
    const good = JSON.stringify({ schema: 2, data: { slots: { A: null, B: null }, update: null, newestTimestamp: Date.now() - 60_000 } });
    const connectsBefore = world.reportedPatches(id).length;
    await bootWithState(pi, current === 'GOOD' ? good : current, previous === 'GOOD' ? good : previous);
    // The twin keeps what the last boot reported: wait for this boot's own picture.
    const reported = await waitFor('the daemon to report after the new boot', async () => {
      if (world.reportedPatches(id).length <= connectsBefore) return undefined;
      const r = await world.reported(id);
      if (!r.piota?.bootedSlot) return undefined;
      return restoredFrom === null || r.piota.stateRecovery?.restoredFrom === restoredFrom ? r : undefined;
    }, 30_000);
    if (restoredFrom) {
      expect(reported.piota.stateRecovery).toMatchObject({ restoredFrom });
      expect(reported.piota.stateRecovery.reason).toContain('state.json');
      const aside = (await readdir(join(pi.dir, 'data'))).filter((n) => n.startsWith('state.json.damaged-'));
      expect(aside).toHaveLength(1);
    } else {
      expect(reported.piota.stateRecovery ?? null).toBeNull();
    }
    expect(reported.piota.bootedSlot).toBe('A');
    expect(reported.iothubDM.firmwareVersion).toBe('1.0.0');
    // And it still takes an update.
    const { url } = await world.bundle(`fw-${id}`, { version: '1.1.0' });
    // Right after a boot the hub may still see the old session go: IoT Hub answers 404 to a method
    // for a device it does not have online, and a caller tries again.
    const answer = await waitFor('the device to take the method', () => world.invoke(id, 'firmwareUpdate', { fwPackageUri: url }), 20_000);
    expect(answer.status).toBe(200);
    const done = await world.waitForUpdate(id, answer.payload.updateId as string, (fu) => ['applyComplete', 'applyFailed', 'downloadFailed'].includes(fu.status));
    expect(done.iothubDM.firmwareUpdate.status).toBe('applyComplete');
    if (name.startsWith('from a newer')) expect((await pi.state()).fleet).toEqual({ ring: 2 });
  });
});

describe('SIGTERM', () => {
  it('ends the daemon within 2 s while it downloads, and the download resumes at the next start', async () => {
    const pi = await world.pi('term-download');
    world.files.faults.bytesPerSecond = 128 * 1024;
    try {
      const { url, rootfs } = await world.bundle('fw-term-download', { version: '1.1.0', rootfsBytes: 1024 * 1024, chunkSize: 64 * 1024 });
      const answer = await world.invoke('term-download', 'firmwareUpdate', { fwPackageUri: url });
      await waitFor('chunks on the medium', async () => ((await pi.state()).update?.nextChunk ?? 0) >= 2, 20_000);
      expect(await sigterm(pi)).toBeLessThan(2000);
      world.files.faults.bytesPerSecond = undefined;
      const done = await world.waitForUpdate('term-download', answer.payload.updateId as string, (fu) => ['applyComplete', 'applyFailed', 'downloadFailed'].includes(fu.status));
      expect(done.iothubDM.firmwareUpdate.status).toBe('applyComplete');
      const written = await readFile((await pi.sim()).slots.B.rootfs);
      expect(written.subarray(0, rootfs.length).equals(rootfs)).toBe(true);
    } finally {
      world.files.faults.bytesPerSecond = undefined;
    }
  });

  it('ends the daemon within 2 s while an update waits for its maintenance window, which it still waits for after', async () => {
    const hour = (new Date().getUTCHours() + 12) % 24;
    const pi = await world.pi('term-window', { daemonConfig: { maintenanceWindow: { cron: `0 ${hour} * * *`, durationMinutes: 30, timeZone: 'UTC' } } });
    const { url } = await world.bundle('fw-term-window', { version: '1.1.0' });
    const answer = await world.invoke('term-window', 'firmwareUpdate', { fwPackageUri: url });
    const updateId = answer.payload.updateId as string;
    await world.waitForUpdate('term-window', updateId, (fu) => fu.status === 'downloadComplete' && fu.waitingFor === 'applyWindow');
    expect(await sigterm(pi)).toBeLessThan(2000);
    await waitFor('the daemon to start again', async () => (await pi.sim()).daemonPid !== null, 10_000);
    const after = await world.waitForUpdate('term-window', updateId, (fu) => fu.status === 'downloadComplete');
    expect(after.iothubDM.firmwareUpdate.waitingFor).toBe('applyWindow');
    expect((await pi.state()).update.phase).toBe('downloadComplete');
  });

  it('ends the daemon within 2 s during a trial that cannot reach the hub', async () => {
    const pi = await world.pi('term-trial', { daemonConfig: { trialTimeoutSeconds: 120 } });
    const { url } = await world.bundle('fw-term-trial', { version: '1.1.0' });
    const answer = await world.invoke('term-trial', 'firmwareUpdate', { fwPackageUri: url });
    await world.waitForUpdate('term-trial', answer.payload.updateId as string, (fu) => fu.status === 'applying');
    await world.stopHub();
    try {
      await waitFor('the trial', async () => {
        const s = await pi.sim();
        return s.trial && s.daemonPid !== null && (await pi.state()).update?.phase === 'trial';
      }, 20_000);
      expect(await sigterm(pi)).toBeLessThan(2000);
    } finally {
      await world.restartHub();
    }
    const done = await world.waitForUpdate('term-trial', answer.payload.updateId as string, (fu) => ['applyComplete', 'applyFailed'].includes(fu.status), 60_000);
    expect(done.iothubDM.firmwareUpdate.status).toBe('applyComplete');
  });
});

describe('the anti-rollback floor', () => {
  it('survives a state reset: an older signed bundle is still refused (downgrade)', async () => {
    const pi = await world.pi('floor-reset');
    const newer = await world.bundle('fw-floor-new', { version: '2.0.0', securityVersion: 3 });
    const up = await world.invoke('floor-reset', 'firmwareUpdate', { fwPackageUri: newer.url });
    const first = await world.waitForUpdate('floor-reset', up.payload.updateId as string, (fu) => ['applyComplete', 'applyFailed', 'downloadFailed'].includes(fu.status));
    expect(first.iothubDM.firmwareUpdate.status).toBe('applyComplete');
    expect((await world.reported('floor-reset')).piota.securityFloor).toBe(3);
    // Wipe the state (both generations) and boot again: the slot records that carried the security version are gone.
    await bootWithState(pi, null, null);
    await waitFor('the daemon back on the hub', async () => (await world.reported('floor-reset')).piota?.bootedSlot === 'B' && world.hub.connectedDevices().includes('floor-reset'), 30_000);
    const older = await world.bundle('fw-floor-old', { version: '1.9.0', securityVersion: 1 });
    const down = await waitFor('the device to take the method', () => world.invoke('floor-reset', 'firmwareUpdate', { fwPackageUri: older.url }), 20_000);
    const end = await world.waitForUpdate('floor-reset', down.payload.updateId as string, (fu) => ['applyComplete', 'applyFailed', 'downloadFailed'].includes(fu.status));
    expect(end.iothubDM.firmwareUpdate).toMatchObject({ status: 'downloadFailed', error: { code: 'downgrade' } });
    expect(end.piota.securityFloor).toBe(3);
  });
});
