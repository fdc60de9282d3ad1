import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { serviceRegistry } from '../../src/service/hub-connection.js';
import { startFleet, type Fleet } from '../../src/simulator/fleet/fleet.js';
import { World, waitFor } from '../e2e/world.js';

/**
 * 50 simulated Pis in this process (the real agent as 50 instances), against the hub emulator over
 * TLS with the real SDKs: updates through the method and through the desired properties, seeded
 * failures, and offline devices that come back and pick the desired release up once.
 */
const COUNT = 50;
const FINAL = new Set(['applyComplete', 'applyFailed', 'downloadFailed']);

describe('the in-process simulated fleet', () => {
  let world: World;
  let fleet: Fleet;
  let release: { url: string; version: string };

  beforeAll(async () => {
    world = await World.create();
    release = await world.bundle('fw-2.0.0.piota', { version: '2.0.0', rootfsBytes: 32 * 1024, bootBytes: 8 * 1024, chunkSize: 16 * 1024 });
    fleet = await startFleet({
      dir: join(world.dir, 'fleet'),
      hubDir: world.hubDir,
      count: COUNT,
      prefix: 'pi',
      pubkey: world.key.pubFile,
      downloadCa: world.files.caFile,
      tags: { ring: 'test', piota: { site: 'lab' } },
      seed: 42,
      failTrialRatio: 0.1,
      failDownloadRatio: 0.1,
      offlineRatio: 0.1,
      watchdogMs: 500,
      logLevel: 'warn',
      daemonConfig: { trialTimeoutSeconds: 60, progressIntervalSeconds: 1 },
    });
  }, 120_000);

  afterAll(async () => {
    await fleet?.stop();
    if (process.env.KEEP_FLEET) console.log(world?.dir); else await world?.close();
  });

  const twin = async (id: string) => (await serviceRegistry(world.hub.info).getTwin(id)).responseBody as unknown as { tags: Record<string, any>; properties: { reported: Record<string, any> } };
  const byRole = (role: string) => fleet.devices.filter((d) => d.role === role).map((d) => d.id);

  /** Waits until every listed device reports a final status, and returns their reported properties. */
  async function finalReports(ids: readonly string[], timeoutMs = 90_000): Promise<Map<string, Record<string, any>>> {
    const done = new Map<string, Record<string, any>>();
    await waitFor(`${ids.length} devices to end their update`, async () => {
      for (const id of ids) {
        if (done.has(id)) continue;
        const r = (await twin(id).catch(() => undefined))?.properties.reported;
        if (r && FINAL.has(r.iothubDM?.firmwareUpdate?.status)) done.set(id, r);
      }
      return done.size === ids.length;
    }, timeoutMs);
    return done;
  }

  it('registers and tags every device; seeded roles land as exact shares; offline devices never connect', async () => {
    expect(fleet.devices.map((d) => d.id)).toEqual(Array.from({ length: COUNT }, (_, i) => `pi-${i + 1}`));
    expect(byRole('failTrial')).toHaveLength(5);
    expect(byRole('failDownload')).toHaveLength(5);
    expect(byRole('offline')).toHaveLength(5);
    const t = await twin('pi-7');
    expect(t.tags).toMatchObject({ ring: 'test', piota: { site: 'lab' } });
    const online = fleet.devices.filter((d) => d.role !== 'offline').map((d) => d.id);
    await waitFor('the online devices to connect', async () => online.every((id) => world.hub.connectedDevices().includes(id)), 60_000);
    for (const id of byRole('offline')) expect(world.hub.connectedDevices()).not.toContain(id);
  }, 90_000);

  it('updates through the method and through the desired properties; failures land where seeded; offline devices come back and apply the desired release once', async () => {
    const registry = serviceRegistry(world.hub.info);
    const { serviceClient } = await import('../../src/service/hub-connection.js');
    const client = serviceClient(world.hub.info);
    // 1. Ten healthy devices through the method, as a job would.
    const viaMethod = byRole('healthy').slice(0, 10);
    const methodIds = new Map<string, string>();
    for (const id of viaMethod) {
      const { result } = await client.invokeDeviceMethod(id, { methodName: 'firmwareUpdate', payload: { fwPackageUri: release.url, version: release.version }, responseTimeoutInSeconds: 30 });
      const answer = result as { status: number; payload: { updateId: string } };
      expect(answer.status).toBe(200);
      methodIds.set(id, answer.payload.updateId);
    }
    const afterMethod = await finalReports(viaMethod);
    for (const id of viaMethod) {
      expect(afterMethod.get(id)!.iothubDM.firmwareUpdate, id).toMatchObject({ status: 'applyComplete', updateId: methodIds.get(id) });
    }

    // 2. The same release as a desired release for every device, offline ones included.
    const firmware = { id: 'rel-2.0.0-w1', fwPackageUri: release.url, version: release.version };
    for (const d of fleet.devices) await registry.updateTwin(d.id, { properties: { desired: { piota: { firmware } } } }, '*');
    const online = fleet.devices.filter((d) => d.role !== 'offline').map((d) => d.id);
    const viaDesired = online.filter((id) => !viaMethod.includes(id));
    const reports = await finalReports(viaDesired);
    const statusOf = (id: string) => reports.get(id)!.iothubDM.firmwareUpdate;
    for (const id of byRole('healthy').filter((id) => viaDesired.includes(id))) {
      expect(statusOf(id).status, id).toBe('applyComplete');
      // The desired release is matched to its update: the same updateId in both places.
      expect(reports.get(id)!.piota.firmware).toMatchObject({ desiredId: firmware.id, decision: 'accepted', updateId: statusOf(id).updateId });
      expect(reports.get(id)!.iothubDM.firmwareVersion).toBe('2.0.0');
    }
    for (const id of byRole('failTrial')) expect(statusOf(id), id).toMatchObject({ status: 'applyFailed', error: { code: 'trialFailed' } });
    for (const id of byRole('failDownload')) expect(statusOf(id), id).toMatchObject({ status: 'downloadFailed', error: { code: 'downloadError' } });
    // Devices updated by the method already run the desired version: recorded, never applied again.
    for (const id of viaMethod) {
      const r = (await twin(id)).properties.reported;
      await waitFor(`${id} to record the desired release`, async () => (await twin(id)).properties.reported.piota?.firmware?.decision === 'alreadyRunning', 20_000);
      expect(r.iothubDM.firmwareUpdate.updateId).toBe(methodIds.get(id));
    }

    // 3. The offline devices come back and pick the desired release up.
    const offline = byRole('offline');
    await fleet.bringOnline(offline);
    const back = await finalReports(offline);
    for (const id of offline) {
      expect(back.get(id)!.iothubDM.firmwareUpdate.status, id).toBe('applyComplete');
      expect(back.get(id)!.piota.firmware).toMatchObject({ desiredId: firmware.id, updateId: back.get(id)!.iothubDM.firmwareUpdate.updateId });
    }
    // Once per id: after the trial reboot and reconnect, each applied the release exactly once.
    for (const d of fleet.snapshot().filter((s) => offline.includes(s.id))) {
      expect(d.bootCount, d.id).toBe(2); // power on, then the one trial boot
      expect(d.bootedSlot).toBe('B');
    }
  }, 400_000);
});
