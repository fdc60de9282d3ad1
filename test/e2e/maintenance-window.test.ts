import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { piotaBin, waitFor, World } from './world.js';

let world: World;
beforeAll(async () => {
  world = await World.create();
}, 60_000);
afterAll(() => world?.close());

/** A cron expression (with seconds) that matches once a day, at `at` as the clock reads in `timeZone`. */
function dailyAt(at: number, timeZone: string): string {
  const f = new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', hour: 'numeric', minute: 'numeric', second: 'numeric' });
  const p = Object.fromEntries(f.formatToParts(at).map((x) => [x.type, Number(x.value)]));
  return `${p.second} ${p.minute} ${p.hour} * * *`;
}

/** A window that is closed for the next twelve hours. */
function farWindow() {
  return { cron: dailyAt(Math.floor(Date.now() / 1000) * 1000 + 12 * 3600_000, 'UTC'), durationMinutes: 60, timeZone: 'UTC' };
}

/** A twin field; a null in a reported PATCH removes it, as on IoT Hub. */
function field(section: Record<string, any>, name: string): unknown {
  return section[name] ?? null;
}

function statusText(deviceDir: string, ...flags: string[]): string {
  const r = spawnSync(process.execPath, [piotaBin, 'status', '--config', join(deviceDir, 'config.json'), ...flags], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout;
}

function status(deviceDir: string): Record<string, any> {
  return JSON.parse(statusText(deviceDir, '--json')) as Record<string, any>;
}

describe('maintenance windows', () => {
  it.concurrent('downloads at once, waits for a window that opens in a few seconds (across a power cut), then applies', async () => {
    // Asia/Kolkata (UTC+05:30): the zone in the config is the one the expression is read in.
    const opening = Math.floor(Date.now() / 1000) * 1000 + 25_000;
    const window = { cron: dailyAt(opening, 'Asia/Kolkata'), durationMinutes: 1, timeZone: 'Asia/Kolkata' };
    const pi = await world.pi('window-soon', { daemonConfig: { maintenanceWindow: window } });
    const { url } = await world.bundle('fw-window-soon', { version: '2.0.0' });
    const answer = await world.invoke('window-soon', 'firmwareUpdate', { fwPackageUri: url });
    expect(answer.status).toBe(200);
    const updateId = answer.payload.updateId as string;

    const waiting = await world.waitForUpdate('window-soon', updateId, (fu) => fu.status === 'downloadComplete');
    expect(Date.now()).toBeLessThan(opening); // else the margin above is too small for this machine
    expect(waiting.iothubDM.firmwareUpdate).toMatchObject({ waitingFor: 'applyWindow', applyAt: new Date(opening).toISOString() });
    expect(field(waiting.iothubDM.firmwareUpdate, 'startedApplyingImage')).toBeNull();
    const local = status(pi.dir);
    expect(local.maintenanceWindow).toEqual({ ...window, open: false, nextOpening: new Date(opening).toISOString() });
    expect(local.update).toMatchObject({ status: 'downloadComplete', waitingFor: 'applyWindow', applyAt: new Date(opening).toISOString() });
    const human = statusText(pi.dir);
    expect(human).toContain(`window:         ${window.cron} for 1 min (Asia/Kolkata); closed, next opening ${new Date(opening).toISOString()}`);
    expect(human).toContain(`waiting for:    the maintenance window; applies at ${new Date(opening).toISOString()}`);

    // The wait lives in the persisted phase: after a power cut the new daemon waits again.
    await pi.powerCut();
    expect((await pi.state()).update.phase).toBe('downloadComplete');
    const done = await world.waitForUpdate('window-soon', updateId, (fu) => fu.status === 'applyComplete' || fu.status === 'applyFailed', 50_000);
    const fu = done.iothubDM.firmwareUpdate;
    expect(fu.status).toBe('applyComplete');
    expect([field(fu, 'waitingFor'), field(fu, 'applyAt')]).toEqual([null, null]);
    expect(Date.parse(fu.startedApplyingImage)).toBeGreaterThanOrEqual(opening);
    expect(done.iothubDM.firmwareVersion).toBe('2.0.0');
    const waits = (await pi.daemonLog()).split('\n').filter((l) => l.includes('waiting for the maintenance window'));
    expect(waits.length).toBeGreaterThanOrEqual(2); // once before the power cut, once after
  }, 60_000);

  it.concurrent('applies at once when the payload says "applyWindow": "now", though the window is closed', async () => {
    const pi = await world.pi('window-now', { daemonConfig: { maintenanceWindow: farWindow() } });
    const { url } = await world.bundle('fw-window-now', { version: '2.1.0' });
    const answer = await world.invoke('window-now', 'firmwareUpdate', { fwPackageUri: url, applyWindow: 'now' });
    expect(answer.status).toBe(200);
    const done = await world.waitForUpdate('window-now', answer.payload.updateId as string, (fu) => fu.status === 'applyComplete' || fu.status === 'applyFailed');
    expect(done.iothubDM.firmwareUpdate.status).toBe('applyComplete');
    expect(status(pi.dir).maintenanceWindow.open).toBe(false);
  }, 60_000);

  it.concurrent('cancels an update waiting for its window: downloadFailed/cancelled, never switched to', async ({ onTestFinished }) => {
    const pi = await world.pi('window-cancel', { daemonConfig: { maintenanceWindow: farWindow() } });
    const autobootBefore = await pi.autoboot();
    const simBefore = await pi.sim();
    const { url } = await world.bundle('fw-window-cancel', { version: '2.2.0' });
    // The operator's view: piota trigger follows the update and shows what it waits for.
    const trigger = spawn(process.execPath, [piotaBin, 'trigger', '--hub-dir', world.hubDir, '--device', 'window-cancel', '--uri', url, '--json', '--timeout', '50'], { stdio: ['ignore', 'pipe', 'pipe'] });
    onTestFinished(() => void (trigger.exitCode === null && trigger.kill()));
    let out = '';
    trigger.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => trigger.once('exit', r));
    const events = () => out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, any>);
    const accepted = await waitFor('trigger to be accepted', async () => events().find((e) => e.event === 'accepted'));
    const updateId = accepted.updateId as string;
    const waiting = await world.waitForUpdate('window-cancel', updateId, (fu) => fu.status === 'downloadComplete');
    expect(waiting.iothubDM.firmwareUpdate.waitingFor).toBe('applyWindow');
    const shown = await waitFor('trigger to show the wait', async () => events().find((e) => e.event === 'status' && e.status === 'downloadComplete'));
    expect(shown).toMatchObject({ waitingFor: 'applyWindow', applyAt: waiting.iothubDM.firmwareUpdate.applyAt });

    const cancel = await world.invoke('window-cancel', 'firmwareUpdateCancel', null);
    expect(cancel).toEqual({ status: 200, payload: { message: 'cancelled', updateId } });
    const done = await world.waitForUpdate('window-cancel', updateId, (fu) => fu.status === 'downloadFailed');
    const fu = done.iothubDM.firmwareUpdate;
    expect(fu.error.code).toBe('cancelled');
    expect(['waitingFor', 'applyAt', 'startedApplyingImage'].map((f) => field(fu, f))).toEqual([null, null, null]);
    // Nothing was switched: the boot configuration is as before, the board never rebooted, and the
    // written slot has no record (so it is never offered as an installed version).
    expect(await pi.autoboot()).toBe(autobootBefore);
    const simAfter = await pi.sim();
    expect(simAfter.bootCount).toBe(simBefore.bootCount);
    expect(simAfter.bootedSlot).toBe(simBefore.bootedSlot);
    const state = await pi.state();
    expect(state.slots[state.update.targetSlot]).toBeNull();
    expect(field(done.piota.slots[state.update.targetSlot], 'version')).toBeNull();
    expect(done.iothubDM.firmwareVersion).toBe('1.0.0');
    expect(await exited).toBe(1); // trigger: downloadFailed
    expect(events().at(-1)).toMatchObject({ event: 'result', result: 'downloadFailed', error: { code: 'cancelled' } });
  }, 60_000);
});
