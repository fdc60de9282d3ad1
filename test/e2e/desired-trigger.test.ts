import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceRegistry } from '../../src/service/hub-connection.js';
import { World, waitFor, type SimulatedPi } from './world.js';

/**
 * The desired-property trigger end to end: the real daemon (a child process of `piota simulate`,
 * with its tryboot reboot), the hub emulator over TLS, and the service SDK writing the desired
 * properties as a rollout or a person with `az iot hub device-twin update` would.
 */
describe('a release in the desired properties', () => {
  let world: World;
  /** The one Pi of both tests (the second goes on where the first ended). */
  let pi: SimulatedPi;
  beforeAll(async () => {
    world = await World.create();
  }, 60_000);
  afterAll(async () => {
    await world?.close();
  });

  const setDesired = (deviceId: string, firmware: unknown) =>
    serviceRegistry(world.hub.info).updateTwin(deviceId, { properties: { desired: { piota: { firmware } } } }, '*');

  it('written before the device connects: applied once it connects, once per id across the trial reboot, reported with its updateId', async () => {
    const release = await world.bundle('fw-2.0.0.piota', { version: '2.0.0', rootfsBytes: 64 * 1024, bootBytes: 16 * 1024 });
    // Registered, but the Pi is not running yet: the release waits in the twin.
    const { addDevice } = await import('../../src/hub-emulator/index.js');
    await addDevice(world.hubDir, 'pi-desired');
    await setDesired('pi-desired', { id: 'wave-1', fwPackageUri: release.url, version: '2.0.0' });
    pi = await world.pi('pi-desired');
    const reported = await waitFor('the desired release to be applied', async () => {
      const r = await world.reported('pi-desired').catch(() => undefined);
      return r?.iothubDM?.firmwareUpdate?.status === 'applyComplete' ? r : undefined;
    }, 60_000);
    const updateId = reported.iothubDM.firmwareUpdate.updateId as string;
    expect(reported.piota.firmware).toMatchObject({ desiredId: 'wave-1', decision: 'accepted', updateId });
    expect(reported.iothubDM.firmwareVersion).toBe('2.0.0');
    expect(reported.piota.bootedSlot).toBe('B');
    // Once per id: the agent met the same desired release again after its trial reboot, and every
    // update the twin ever showed is this one.
    const updateIds = new Set(world.reportedPatches('pi-desired').map((p) => p.patch.iothubDM?.firmwareUpdate?.updateId).filter(Boolean));
    expect([...updateIds]).toEqual([updateId]);
    // The same decision on the device, for whoever looks there (docs/status.md).
    const status = await pi.status();
    expect(status.desiredFirmware).toEqual({ ...reported.piota.firmware, message: null });
    expect(status.lastResult?.updateId).toBe(updateId);
    expect(await pi.statusText()).toContain(`desired:        wave-1 accepted as update ${updateId} (`);
  }, 120_000);

  it('changed while connected: an invalid release is refused in the twin with the reason; a valid one with a new id is applied', async () => {
    await setDesired('pi-desired', { id: 'wave-2', fwPackageUri: 'http://example.com/fw.piota', version: '3.0.0' });
    const refused = await waitFor('the refusal', async () => {
      const f = (await world.reported('pi-desired')).piota?.firmware;
      return f?.desiredId === 'wave-2' ? f : undefined;
    }, 30_000);
    expect(refused.decision).toBe('refused');
    expect(refused.updateId).toBeUndefined(); // null on the device: IoT Hub deletes a property set to null
    expect(refused.message).toContain('must be an https:// URL');
    expect((await pi.status()).desiredFirmware).toMatchObject({ desiredId: 'wave-2', decision: 'refused', updateId: null, message: refused.message });
    expect(await pi.statusText()).toContain(`desired:        wave-2 refused — ${refused.message}`);
    expect((await world.reported('pi-desired')).iothubDM.firmwareVersion).toBe('2.0.0');

    const release = await world.bundle('fw-3.0.0.piota', { version: '3.0.0', rootfsBytes: 64 * 1024, bootBytes: 16 * 1024 });
    await setDesired('pi-desired', { id: 'wave-3', fwPackageUri: release.url, version: '3.0.0' });
    const done = await waitFor('the new release', async () => {
      const r = await world.reported('pi-desired');
      return r.piota?.firmware?.desiredId === 'wave-3' && r.iothubDM?.firmwareUpdate?.status === 'applyComplete' ? r : undefined;
    }, 60_000);
    expect(done.iothubDM.firmwareVersion).toBe('3.0.0');
    expect(done.piota.firmware.updateId).toBe(done.iothubDM.firmwareUpdate.updateId);
  }, 120_000);
});
