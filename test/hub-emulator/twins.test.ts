import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import mqtt from 'mqtt';
import type { Client as DeviceClient, Twin } from 'azure-iot-device';
import { addDevice, type RunningHub } from '../../src/hub-emulator/index.js';
import { makeSasToken } from '../../src/hub-emulator/sas.js';
import { serviceRegistry } from '../../src/service/hub-connection.js';
import { deviceClient, rawRest, removeDir, startTestHub, tempDir, within } from './helpers.js';

function report(twin: Twin, patch: Record<string, unknown>): Promise<void> {
  return new Promise((ok, fail) => twin.properties.reported.update(patch, (err?: Error) => (err ? fail(err) : ok())));
}

const API = 'api-version=2021-04-12';

describe('device twins', () => {
  let dir: string;
  let hub: RunningHub;
  let device: DeviceClient;
  let twin: Twin;

  beforeAll(async () => {
    dir = await tempDir();
    hub = await startTestHub(dir);
    device = await deviceClient(hub, await addDevice(dir, 'twin-1'));
    await device.open();
    twin = await device.getTwin();
  });
  afterAll(async () => {
    await device?.close();
    await hub?.close();
    await removeDir(dir);
  });

  it('merges reported patches, deletes on null, counts $version and keeps $metadata', async () => {
    const registry = serviceRegistry(hub.info);
    const { responseBody: t0 } = await registry.getTwin('twin-1');
    const v0 = t0.properties.reported.$version;
    await report(twin, { a: 1, obj: { x: 'x', y: 'y' }, gone: true });
    await report(twin, { obj: { y: null, z: 3 }, gone: null });
    const { responseBody: t1 } = await registry.getTwin('twin-1');
    const rep = t1.properties.reported as unknown as { a: number; obj: unknown; gone?: unknown; $version: number; $metadata: { $lastUpdated: string; a: { $lastUpdated: string } } };
    expect(rep.a).toBe(1);
    expect(rep.obj).toEqual({ x: 'x', z: 3 });
    expect(rep.gone).toBeUndefined();
    expect(rep.$version).toBe(v0 + 2);
    expect(Date.parse(rep.$metadata.$lastUpdated)).toBeGreaterThan(Date.now() - 60_000);
    expect(rep.$metadata.a.$lastUpdated).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(rep.$metadata).not.toHaveProperty('gone');
    expect(t1.etag).not.toBe(t0.etag);
    expect((t1 as unknown as { version: number }).version).toBeGreaterThan((t0 as unknown as { version: number }).version);
    // The device's own view agrees.
    const mine = await device.getTwin();
    expect(mine.properties.reported.obj).toEqual({ x: 'x', z: 3 });
  });

  it('applies concurrent patches from both sides without losing any', async () => {
    const registry = serviceRegistry(hub.info);
    const { responseBody: t0 } = await registry.getTwin('twin-1');
    const n = 20;
    await Promise.all([
      ...Array.from({ length: n }, (_, i) => report(twin, { [`r${i}`]: i })),
      ...Array.from({ length: n }, (_, i) => registry.updateTwin('twin-1', { properties: { desired: { [`d${i}`]: i } } }, '*')),
    ]);
    const { responseBody: t1 } = await registry.getTwin('twin-1');
    for (let i = 0; i < n; i++) {
      expect(t1.properties.reported[`r${i}`]).toBe(i);
      expect(t1.properties.desired[`d${i}`]).toBe(i);
    }
    expect(t1.properties.reported.$version).toBe(t0.properties.reported.$version + n);
    expect(t1.properties.desired.$version).toBe(t0.properties.desired.$version + n);
  });

  it('pushes desired patches with $version and records $lastUpdatedVersion; tags stay service-side', async () => {
    const registry = serviceRegistry(hub.info);
    const deltas: Record<string, unknown>[] = [];
    twin.on('properties.desired', (d: Record<string, unknown>) => deltas.push(d));
    const { responseBody: before } = await registry.getTwin('twin-1');
    const { responseBody: after } = await registry.updateTwin('twin-1', { tags: { site: 'north', rack: 7 }, properties: { desired: { level: { a: 1 } } } }, before.etag);
    expect(after.tags).toEqual({ site: 'north', rack: 7 });
    const desired = after.properties.desired as unknown as { $version: number; $metadata: { level: { $lastUpdatedVersion: number } } };
    expect(desired.$metadata.level.$lastUpdatedVersion).toBe(desired.$version);
    await new Promise((r) => setTimeout(r, 300));
    const pushed = deltas.find((d) => 'level' in d);
    expect(pushed).toEqual({ level: { a: 1 }, $version: desired.$version });
    // tags merge with null deletes.
    const { responseBody: t2 } = await registry.updateTwin('twin-1', { tags: { rack: null } }, '*');
    expect(t2.tags).toEqual({ site: 'north' });
  });

  it('PUT /twins replaces tags and desired properties', async () => {
    await rawRest(hub, 'PATCH', `/twins/twin-1?${API}`, { body: JSON.stringify({ tags: { old: 1 }, properties: { desired: { oldD: 1 } } }) });
    const put = await rawRest(hub, 'PUT', `/twins/twin-1?${API}`, { body: JSON.stringify({ tags: { fresh: 2 }, properties: { desired: { freshD: 2 } } }) });
    expect(put.status).toBe(200);
    const t = put.json as { tags: Record<string, unknown>; properties: { desired: Record<string, unknown> } };
    expect(t.tags).toEqual({ fresh: 2 });
    expect(t.properties.desired.freshD).toBe(2);
    expect(t.properties.desired).not.toHaveProperty('oldD');
  });

  it('refuses a stale etag with 412 and leaves the twin alone', async () => {
    const registry = serviceRegistry(hub.info);
    const { responseBody: t } = await registry.getTwin('twin-1');
    await registry.updateTwin('twin-1', { properties: { desired: { n: 1 } } }, t.etag);
    const err = await registry.updateTwin('twin-1', { properties: { desired: { n: 2 } } }, t.etag).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.name).toBe('InvalidEtagError');
    const { responseBody: now } = await registry.getTwin('twin-1');
    expect(now.properties.desired.n).toBe(1);
  });

  it('enforces the size limits: 32 KB reported, 32 KB desired, 8 KB tags', async () => {
    const big = (n: number) => 'x'.repeat(n);
    const tooBigReported = report(twin, { blob: big(33 * 1024) });
    await expect(within(tooBigReported, 5000, 'reported patch over the limit')).rejects.toThrow(/limit/);
    await report(twin, { blob: big(30 * 1024) }); // under the limit is fine
    await report(twin, { blob: null });

    const desired = await rawRest(hub, 'PATCH', `/twins/twin-1?${API}`, { body: JSON.stringify({ properties: { desired: { blob: big(33 * 1024) } } }) });
    expect(desired.status).toBe(400);
    expect((desired.json as { Message: string }).Message).toMatch(/^ErrorCode:ArgumentInvalid;/);
    const tags = await rawRest(hub, 'PATCH', `/twins/twin-1?${API}`, { body: JSON.stringify({ tags: { blob: big(9 * 1024) } }) });
    expect(tags.status).toBe(400);
    const fine = await rawRest(hub, 'PATCH', `/twins/twin-1?${API}`, { body: JSON.stringify({ tags: { small: big(1024) } }) });
    expect(fine.status).toBe(200);
  });

  it('answers malformed input as IoT Hub does and keeps running', async () => {
    const bad = await rawRest(hub, 'PATCH', `/twins/twin-1?${API}`, { body: '{"properties": {' });
    expect(bad.status).toBe(400);
    expect((bad.json as { Message: string }).Message).toMatch(/^ErrorCode:ArgumentInvalid;/);
    const notObject = await rawRest(hub, 'PATCH', `/twins/twin-1?${API}`, { body: '[1,2]' });
    expect(notObject.status).toBe(400);
    const reportedByService = await rawRest(hub, 'PATCH', `/twins/twin-1?${API}`, { body: JSON.stringify({ properties: { reported: { a: 2 } } }) });
    expect(reportedByService.status).toBe(400);
    const badKey = await rawRest(hub, 'PATCH', `/twins/twin-1?${API}`, { body: JSON.stringify({ properties: { desired: { 'a.b': 1 } } }) });
    expect(badKey.status).toBe(400);

    // Over MQTT: a malformed reported patch gets an error answer on the response topic; then an unknown topic closes the link.
    const ca = await readFile(hub.info.caFile, 'utf8');
    // Its own device: the SDK client of twin-1 reconnects by itself and would take the session over.
    const key = /SharedAccessKey=([^;]+)/.exec(await addDevice(dir, 'twin-raw'))![1];
    const raw = mqtt.connect(`mqtts://${hub.info.host}:${hub.info.mqttPort}`, {
      clientId: 'twin-raw',
      username: `${hub.info.host}/twin-raw/?api-version=2021-04-12`,
      password: makeSasToken(`${hub.info.host}:${hub.info.mqttPort}/devices/twin-raw`, key, Math.floor(Date.now() / 1000) + 600),
      ca,
      reconnectPeriod: 0,
      clean: true,
    });
    await new Promise<void>((ok, fail) => {
      raw.on('connect', () => ok());
      raw.on('error', fail);
    });
    await new Promise<void>((ok, fail) => raw.subscribe('$iothub/twin/res/#', { qos: 0 }, (err) => (err ? fail(err) : ok())));
    const answer = new Promise<{ topic: string; body: string }>((ok) => raw.once('message', (topic, body) => ok({ topic, body: body.toString() })));
    raw.publish('$iothub/twin/PATCH/properties/reported/?$rid=77', '{not json');
    const { topic, body } = await within(answer, 5000, 'answer to a malformed patch');
    expect(topic).toBe('$iothub/twin/res/400/?$rid=77');
    expect(JSON.parse(body).errorCode).toBe(400004);
    const closed = new Promise<void>((ok) => raw.once('close', () => ok()));
    raw.publish('not/an/iothub/topic', 'x');
    await within(closed, 5000, 'the hub to close a link that publishes to an unknown topic');
    raw.end(true);

    // The hub is still up, and so is the SDK device's link.
    const ok = await rawRest(hub, 'GET', `/twins/twin-1?${API}`);
    expect(ok.status).toBe(200);
    expect(hub.connectedDevices()).toContain('twin-1');
    expect(hub.connectedDevices()).not.toContain('twin-raw');
  });
});
