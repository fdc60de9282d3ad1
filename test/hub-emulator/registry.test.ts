import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import deviceSdk from 'azure-iot-device';
import { addDevice, type RunningHub } from '../../src/hub-emulator/index.js';
import { serviceRegistry } from '../../src/service/hub-connection.js';
import { deviceClient, eventually, rawRest, removeDir, startTestHub, tempDir } from './helpers.js';

const API = 'api-version=2021-04-12';

describe('registry, query and telemetry', () => {
  let dir: string;
  let hub: RunningHub;

  beforeAll(async () => {
    dir = await tempDir();
    hub = await startTestHub(dir);
  });
  afterAll(async () => {
    await hub?.close();
    await removeDir(dir);
  });

  it('creates a device with generated keys when the SDK sends none (empty strings), gets and deletes it', async () => {
    const registry = serviceRegistry(hub.info);
    const { responseBody: created } = await registry.create({ deviceId: 'reg-1' });
    const keys = created.authentication!.symmetricKey!;
    expect(Buffer.from(keys.primaryKey, 'base64')).toHaveLength(32);
    expect(Buffer.from(keys.secondaryKey, 'base64')).toHaveLength(32);
    expect(keys.primaryKey).not.toBe(keys.secondaryKey);
    expect(created.status).toBe('enabled');
    const { responseBody: got } = await registry.get('reg-1');
    expect(got.authentication!.symmetricKey!.primaryKey).toBe(keys.primaryKey);
    expect(got.connectionState).toBe('Disconnected');

    const dup = await registry.create({ deviceId: 'reg-1' }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(dup?.name).toBe('DeviceAlreadyExistsError');

    // The device can connect with the generated key.
    const cs = `HostName=${hub.info.host}:${hub.info.mqttPort};DeviceId=reg-1;SharedAccessKey=${keys.primaryKey}`;
    const device = await deviceClient(hub, cs);
    await device.open();
    expect((await registry.get('reg-1')).responseBody.connectionState).toBe('Connected');

    await registry.delete('reg-1');
    await eventually(() => !hub.connectedDevices().includes('reg-1'), 5000, 'the deleted device to be dropped');
    await device.close().catch(() => undefined);
    const gone = await registry.get('reg-1').then(
      () => undefined,
      (e: Error) => e,
    );
    expect(gone?.name).toBe('DeviceNotFoundError');
  });

  it('an update that leaves status out keeps it; an etag mismatch is 412', async () => {
    const registry = serviceRegistry(hub.info);
    await registry.create({ deviceId: 'reg-status', status: 'disabled' });
    const { responseBody } = await registry.update({ deviceId: 'reg-status' });
    expect(responseBody.status).toBe('disabled');
    const stale = await rawRest(hub, 'PUT', `/devices/reg-status?${API}`, { body: JSON.stringify({ deviceId: 'reg-status', status: 'enabled' }), headers: { 'If-Match': '"bm9wZQ=="' } });
    expect(stale.status).toBe(412);
    const fresh = await rawRest(hub, 'PUT', `/devices/reg-status?${API}`, { body: JSON.stringify({ deviceId: 'reg-status', status: 'enabled' }), headers: { 'If-Match': `"${responseBody.etag}"` } });
    expect(fresh.status).toBe(200);
    expect((fresh.json as { status: string }).status).toBe('enabled');
  });

  it('keeps keys given by the caller', async () => {
    const primaryKey = Buffer.alloc(32, 1).toString('base64');
    const secondaryKey = Buffer.alloc(32, 2).toString('base64');
    const { responseBody } = await serviceRegistry(hub.info).create({ deviceId: 'reg-keys', authentication: { symmetricKey: { primaryKey, secondaryKey } } });
    expect(responseBody.authentication!.symmetricKey).toEqual({ primaryKey, secondaryKey });
  });

  it('knows a device added by `hub device add` while it runs, at once', async () => {
    const cs = await addDevice(dir, 'added-live');
    expect(cs).toBe(`HostName=${hub.info.host}:${hub.info.mqttPort};DeviceId=added-live;SharedAccessKey=${/SharedAccessKey=(.+)$/.exec(cs)![1]}`);
    const { responseBody } = await serviceRegistry(hub.info).get('added-live');
    expect(responseBody.deviceId).toBe('added-live');
    const fresh = await addDevice(dir, 'added-live-2');
    const device = await deviceClient(hub, fresh);
    await device.open();
    expect(hub.connectedDevices()).toContain('added-live-2');
    await device.close();
  });

  it('answers SELECT * FROM devices, with WHERE on tags and reported properties, in pages', async () => {
    const registry = serviceRegistry(hub.info);
    for (const [id, site] of [['q-1', 'north'], ['q-2', 'south'], ['q-3', 'north']]) {
      await registry.create({ deviceId: id });
      await registry.updateTwin(id, { tags: { site } }, '*');
    }
    const all = await registry.createQuery('SELECT * FROM devices').nextAsTwin();
    expect(all.result.map((t) => t.deviceId)).toEqual(expect.arrayContaining(['q-1', 'q-2', 'q-3', 'reg-keys']));
    const north = await registry.createQuery("SELECT * FROM devices WHERE tags.site = 'north'").nextAsTwin();
    expect(north.result.map((t) => t.deviceId).sort()).toEqual(['q-1', 'q-3']);
    const either = await registry.createQuery("SELECT * FROM devices WHERE tags.site = 'south' OR deviceId = 'q-1'").nextAsTwin();
    expect(either.result.map((t) => t.deviceId).sort()).toEqual(['q-1', 'q-2']);

    const query = registry.createQuery("SELECT * FROM devices WHERE IS_DEFINED(tags.site)", 2);
    const page1 = await query.nextAsTwin();
    expect(page1.result).toHaveLength(2);
    expect(query.hasMoreResults).toBe(true);
    const page2 = await query.nextAsTwin();
    expect(page2.result).toHaveLength(1);
    expect(query.hasMoreResults).toBe(false);

    const unsupported = await rawRest(hub, 'POST', `/devices/query?${API}`, { body: JSON.stringify({ query: 'SELECT deviceId FROM devices.modules' }) });
    expect(unsupported.status).toBe(400);
  });

  it('answers bad requests with IoT Hub error bodies', async () => {
    const cases: Array<[string, string, string | undefined, number, string]> = [
      ['PUT', `/devices/bad%2Fid?${API}`, '{}', 400, 'ArgumentInvalid'],
      ['PUT', `/devices/x1?${API}`, '{"deviceId":"x2"}', 400, 'ArgumentInvalid'],
      ['PUT', `/devices/x1?${API}`, 'not json', 400, 'ArgumentInvalid'],
      ['GET', `/devices/nobody?${API}`, undefined, 404, 'DeviceNotFound'],
      ['GET', `/twins/nobody?${API}`, undefined, 404, 'DeviceNotFound'],
      ['GET', `/nothing/here?${API}`, undefined, 404, 'NotFound'],
      ['GET', `/devices/q-1`, undefined, 400, 'BadRequest'],
      ['GET', `/devices/%E0%A4%A?${API}`, undefined, 400, 'BadRequest'],
      ['DELETE', `/twins/q-1?${API}`, undefined, 405, 'MethodNotAllowed'],
    ];
    for (const [method, path, body, status, code] of cases) {
      const reply = await rawRest(hub, method, path, { body });
      expect(reply.status, `${method} ${path}`).toBe(status);
      expect((reply.json as { Message: string }).Message, `${method} ${path}`).toMatch(new RegExp(`^ErrorCode:${code};`));
    }
    const noType = await rawRest(hub, 'PUT', `/devices/x3?${API}`, { body: '{}', headers: { 'Content-Type': 'text/plain' } });
    expect(noType.status).toBe(415);
  });

  it('accepts and counts telemetry', async () => {
    const device = await deviceClient(hub, await addDevice(dir, 'tele-1'));
    await device.open();
    for (let i = 0; i < 3; i++) await device.sendEvent(new deviceSdk.Message(JSON.stringify({ temp: 20 + i })));
    expect(hub.telemetryCount('tele-1')).toBe(3);
    expect(hub.telemetryCount('nobody')).toBe(0);
    await device.close();
  });
});
