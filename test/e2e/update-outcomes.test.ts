import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { generateKeyPair } from '../../src/bundle/keys.js';
import { World } from './world.js';

// The daemon end to end, driven the way Microsoft's firmware-update service sample drives a device:
// invokeDeviceMethod('firmwareUpdate', {fwPackageUri}) and then getTwin until the status settles.
let world: World;
beforeAll(async () => {
  world = await World.create();
}, 60_000);
afterAll(() => world?.close());

describe('an update through the reboot', () => {
  it('reaches applyComplete on the new slot and reports the new version', async () => {
    const pi = await world.pi('happy');
    const before = await world.reported('happy');
    expect(before.iothubDM.firmwareVersion).toBe('1.0.0');
    expect(before.piota).toMatchObject({ bootedSlot: 'A', committedSlot: 'A', model: 'raspberrypi4-64' });

    const { url, rootfs } = await world.bundle('fw-1.0.1', { version: '1.0.1', rootfsBytes: 300 * 1024 });
    const answer = await world.invoke('happy', 'firmwareUpdate', { fwPackageUri: url });
    expect(answer.status).toBe(200);
    const updateId = answer.payload.updateId as string;
    expect(updateId).toMatch(/^[0-9a-f-]{36}$/);

    // The caller may read the twin right after the answer: it already shows this update.
    const right = await world.reported('happy');
    expect(right.iothubDM.firmwareUpdate).toMatchObject({ updateId, fwPackageUri: url });

    const done = await world.waitForUpdate('happy', updateId, (fu) => fu.status === 'applyComplete');
    const fu = done.iothubDM.firmwareUpdate;
    // A null in a reported PATCH deletes the property on IoT Hub: a cleared error is absent.
    expect(fu.error).toBeUndefined();
    expect(fu.targetVersion).toBe('1.0.1');
    expect(fu.progress.percent).toBe(100);
    for (const t of ['startedWaitingTime', 'startedDownloadingTime', 'downloadCompleteTime', 'startedApplyingImage', 'lastFirmwareUpdate']) {
      expect(Date.parse(fu[t]), t).toBeGreaterThan(0);
    }
    expect(done.iothubDM.firmwareVersion).toBe('1.0.1');
    expect(done.piota).toMatchObject({ bootedSlot: 'B', committedSlot: 'B' });
    expect(done.piota.slots.B.version).toBe('1.0.1');

    const sim = await pi.sim();
    expect(sim.bootedSlot).toBe('B');
    expect(await pi.autoboot()).toMatch(/\[all\][^[]*boot_partition=3/);
    // The image really is in slot B's rootfs partition.
    const { readFile } = await import('node:fs/promises');
    const written = await readFile(sim.slots.B.rootfs);
    expect(written.subarray(0, rootfs.length).equals(rootfs)).toBe(true);
    // One JSON log line per state change, with the updateId; no secrets.
    const log = await pi.daemonLog();
    expect(log).toContain(`"updateId":"${updateId}"`);
    expect(log).not.toMatch(/SharedAccessKey=|sig=/);
  });

  it('reports applyFailed and stays on the old slot and version when the trial boot hangs', async () => {
    const pi = await world.pi('hangs', { failTrial: true });
    const { url } = await world.bundle('fw-hang', { version: '1.0.1' });
    const answer = await world.invoke('hangs', 'firmwareUpdate', { fwPackageUri: url });
    expect(answer.status).toBe(200);
    const updateId = answer.payload.updateId as string;
    const done = await world.waitForUpdate('hangs', updateId, (fu) => fu.status === 'applyFailed');
    expect(done.iothubDM.firmwareUpdate.error.code).toBe('trialFailed');
    expect(done.iothubDM.firmwareVersion).toBe('1.0.0');
    expect(done.piota).toMatchObject({ bootedSlot: 'A', committedSlot: 'A' });
    expect((await pi.sim()).bootedSlot).toBe('A');
    expect(await pi.autoboot()).toMatch(/\[all\][^[]*boot_partition=2/);
  });
});

describe('bundles the device must refuse', () => {
  it.each([
    ['signed by an unknown key', { version: '1.0.1', signingKey: generateKeyPair().privateKeyPem }, 'untrustedKey'],
    ['for another model', { version: '1.0.1', compatible: ['raspberrypi5'] }, 'incompatible'],
  ])('refuses a bundle %s with downloadFailed and leaves the boot alone', async (_what, spec, code) => {
    const id = `refuse-${code}`;
    const pi = await world.pi(id);
    const autobootBefore = await pi.autoboot();
    const { url } = await world.bundle(`fw-${code}`, spec);
    const answer = await world.invoke(id, 'firmwareUpdate', { fwPackageUri: url });
    expect(answer.status).toBe(200);
    const done = await world.waitForUpdate(id, answer.payload.updateId as string, (fu) => fu.status === 'downloadFailed');
    expect(done.iothubDM.firmwareUpdate.error.code).toBe(code);
    expect(await pi.autoboot()).toBe(autobootBefore);
    expect((await pi.sim()).bootCount).toBe(1);
  });

  it('refuses a corrupted chunk (hashMismatch) and a downgrade', async () => {
    const pi = await world.pi('refuse-more');
    const autobootBefore = await pi.autoboot();
    // Format 1: the file ends with its last chunk, so 100 kB before the end is inside a chunk (in format
    // 2 it is the unit store, which a full install does not read; test/e2e/adaptive-updates.test.ts
    // tampers with that).
    const { path, url } = await world.bundle('fw-corrupt', { version: '1.0.1', rootfsBytes: 256 * 1024, chunkSize: 64 * 1024, formatVersion: 1 });
    const { open } = await import('node:fs/promises');
    const fh = await open(path, 'r+');
    const { size } = await fh.stat();
    await fh.write(Buffer.from([0xff, 0x00, 0xff]), 0, 3, size - 100_000); // inside a middle chunk
    await fh.close();
    let answer = await world.invoke('refuse-more', 'firmwareUpdate', { fwPackageUri: url });
    let done = await world.waitForUpdate('refuse-more', answer.payload.updateId as string, (fu) => fu.status === 'downloadFailed');
    expect(done.iothubDM.firmwareUpdate.error.code).toBe('hashMismatch');

    // Install security version 5, then offer a bundle at security version 2.
    const { url: sv5 } = await world.bundle('fw-sv5', { version: '2.0.0', securityVersion: 5 });
    answer = await world.invoke('refuse-more', 'firmwareUpdate', { fwPackageUri: sv5 });
    await world.waitForUpdate('refuse-more', answer.payload.updateId as string, (fu) => fu.status === 'applyComplete');
    const bootsAfterUpdate = (await pi.sim()).bootCount;
    const autobootAfterUpdate = await pi.autoboot();
    expect(autobootAfterUpdate).not.toBe(autobootBefore);
    const { url: old } = await world.bundle('fw-old', { version: '1.5.0', securityVersion: 2 });
    answer = await world.invoke('refuse-more', 'firmwareUpdate', { fwPackageUri: old });
    done = await world.waitForUpdate('refuse-more', answer.payload.updateId as string, (fu) => fu.status === 'downloadFailed');
    expect(done.iothubDM.firmwareUpdate.error.code).toBe('downgrade');
    expect(done.iothubDM.firmwareVersion).toBe('2.0.0');
    expect(await pi.autoboot()).toBe(autobootAfterUpdate);
    expect((await pi.sim()).bootCount).toBe(bootsAfterUpdate);
  });
});
