import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client as DeviceClient } from 'azure-iot-device';
import type { Registry } from 'azure-iothub';
import { addDevice, startHub, type RunningHub } from '../../src/hub-emulator/index.js';
import { serviceRegistry } from '../../src/service/hub-connection.js';
import { deviceClient, eventually, rawRest, removeDir, startTestHub, tempDir } from './helpers.js';

const API = 'api-version=2021-04-12';
type Row = Record<string, any>;

describe('automatic device configurations through the real Registry', () => {
  let dir: string;
  let hub: RunningHub;
  let registry: Registry;
  let device: DeviceClient;
  const desired: Row[] = [];

  beforeAll(async () => {
    dir = await tempDir();
    hub = await startTestHub(dir);
    registry = serviceRegistry(hub.info);
    device = await deviceClient(hub, await addDevice(dir, 'cfg-1'));
    await device.open();
    const twin = await device.getTwin();
    twin.on('properties.desired', (d: Row) => desired.push(d));
    await addDevice(dir, 'cfg-2');
    await addDevice(dir, 'cfg-3');
    await registry.updateTwin('cfg-1', { tags: { ring: 'canary' } }, '*');
    await registry.updateTwin('cfg-2', { tags: { ring: 'canary' } }, '*');
    await registry.updateTwin('cfg-3', { tags: { ring: 'main' } }, '*');
  });
  afterAll(async () => {
    await device?.close();
    await hub?.close();
    await removeDir(dir);
  });

  const release = (id: string) => ({ 'properties.desired.piota': { firmware: { id, fwPackageUri: `https://example.test/${id}.bundle`, version: id } } });

  it('applies deviceContent to the devices its target condition matches, with system and custom metrics', async () => {
    await registry.addConfiguration({
      id: 'wave-1',
      content: { deviceContent: release('r1') },
      targetCondition: "tags.ring = 'canary'",
      priority: 10,
      labels: { rollout: 'r1' },
      metrics: { queries: { acted: "SELECT deviceId FROM devices WHERE configurations.[[wave-1]].status = 'Applied' AND properties.reported.piota.firmware.id = 'r1'" } },
    } as never);
    const t1 = (await registry.getTwin('cfg-1')).responseBody as unknown as Row;
    expect(t1.properties.desired.piota.firmware.id).toBe('r1');
    expect(t1.configurations).toEqual({ 'wave-1': { status: 'Applied' } });
    const t3 = (await registry.getTwin('cfg-3')).responseBody as unknown as Row;
    expect(t3.properties.desired.piota).toBeUndefined();
    await eventually(() => desired.some((d) => d.piota?.firmware?.id === 'r1'), 5000, 'the desired patch on the connected device');

    await device.getTwin().then((t) => new Promise<void>((ok, fail) => t.properties.reported.update({ piota: { firmware: { id: 'r1' } } }, (e?: Error) => (e ? fail(e) : ok()))));
    const { responseBody: cfg } = await registry.getConfiguration('wave-1');
    const c = cfg as unknown as Row;
    expect(c.systemMetrics.results).toEqual({ targetedCount: 2, appliedCount: 2 });
    expect(c.metrics.results).toEqual({ acted: 1 });
    expect(c.labels).toEqual({ rollout: 'r1' });
    expect(c.etag).toEqual(expect.any(String));
  });

  it('re-evaluates when tags change: a device that joins the target gets the content', async () => {
    await registry.updateTwin('cfg-3', { tags: { ring: 'canary' } }, '*');
    // As in IoT Hub, the configuration reaches the device after the tag change, not within it.
    await eventually(async () => ((await registry.getTwin('cfg-3')).responseBody as unknown as Row).properties.desired.piota?.firmware?.id === 'r1', 5000, 'r1 on cfg-3');
    const { result } = await registry.createQuery("SELECT COUNT() AS n FROM devices WHERE configurations.[[wave-1]].status = 'Applied'").next();
    expect(result).toEqual([{ n: 3 }]);
  });

  it('the highest priority wins; the lower one shows Targeted', async () => {
    await registry.addConfiguration({ id: 'hotfix', content: { deviceContent: release('r2') }, targetCondition: "deviceId = 'cfg-2'", priority: 20 } as never);
    const t2 = (await registry.getTwin('cfg-2')).responseBody as unknown as Row;
    expect(t2.properties.desired.piota.firmware.id).toBe('r2');
    expect(t2.configurations).toEqual({ 'wave-1': { status: 'Targeted' }, hotfix: { status: 'Applied' } });
    const list = (await registry.getConfigurations()).responseBody as unknown as Row[];
    expect(list.map((c) => c.id).sort()).toEqual(['hotfix', 'wave-1']);
    const wave1 = list.find((c) => c.id === 'wave-1')!;
    expect(wave1.systemMetrics.results).toEqual({ targetedCount: 3, appliedCount: 2 });
  });

  it('updates with If-Match, refuses a content change, deletes', async () => {
    const { responseBody } = await registry.getConfiguration('hotfix');
    const c = responseBody as unknown as Row;
    await registry.updateConfiguration({ ...c, targetCondition: "deviceId IN ['cfg-2', 'cfg-3']" } as never);
    const stale = await rawRest(hub, 'PUT', `/configurations/hotfix?${API}`, { body: JSON.stringify(c), headers: { 'If-Match': `"${c.etag}"` } });
    expect(stale.status).toBe(412);
    const t3 = (await registry.getTwin('cfg-3')).responseBody as unknown as Row;
    expect(t3.properties.desired.piota.firmware.id).toBe('r2');
    const again = await rawRest(hub, 'PUT', `/configurations/hotfix?${API}`, {
      body: JSON.stringify({ ...c, content: { deviceContent: release('r3') } }),
      headers: { 'If-Match': '*' },
    });
    expect(again.status).toBe(400);
    expect(again.text).toContain('content cannot be updated');
    await registry.removeConfiguration('hotfix');
    expect((await rawRest(hub, 'GET', `/configurations/hotfix?${API}`)).status).toBe(404);
  });

  it('keeps configurations and where they were applied across a restart', async () => {
    const { info } = hub;
    await device.close();
    await hub.close();
    hub = await startHub({ dir, mqttPort: info.mqttPort, httpsPort: info.httpsPort });
    registry = serviceRegistry(hub.info);
    const c = (await registry.getConfiguration('wave-1')).responseBody as unknown as Row;
    expect(c.systemMetrics.results).toEqual({ targetedCount: 3, appliedCount: 3 });
    const t1 = (await registry.getTwin('cfg-1')).responseBody as unknown as Row;
    expect(t1.configurations).toEqual({ 'wave-1': { status: 'Applied' } });
  });

  it('refuses bad configurations, naming the problem', async () => {
    const put = (body: Row) => rawRest(hub, 'PUT', `/configurations/bad?${API}`, { body: JSON.stringify({ id: 'bad', ...body }) });
    const noPrefix = await put({ content: { deviceContent: { 'tags.x': 1 } }, targetCondition: '*' });
    expect(noPrefix.status).toBe(400);
    expect(noPrefix.text).toContain('must start with properties.desired.');
    const badTarget = await put({ content: { deviceContent: release('x') }, targetCondition: "tags.ring = 'a' AND" });
    expect(badTarget.status).toBe(400);
    expect(badTarget.text).toContain('targetCondition');
    const upper = await rawRest(hub, 'PUT', `/configurations/Bad?${API}`, { body: JSON.stringify({ content: { deviceContent: release('x') }, targetCondition: '*' }) });
    expect(upper.status).toBe(400);
    expect(upper.text).toContain('lowercase');
  });
});
