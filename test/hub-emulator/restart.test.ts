import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import type { Client as DeviceClient } from 'azure-iot-device';
import { addDevice, type RunningHub } from '../../src/hub-emulator/index.js';
import { serviceRegistry } from '../../src/service/hub-connection.js';
import { deviceClient, eventually, removeDir, startTestHub, tempDir, within } from './helpers.js';

function reported(twin: Awaited<ReturnType<DeviceClient['getTwin']>>, patch: Record<string, unknown>): Promise<void> {
  return new Promise((ok, fail) => twin.properties.reported.update(patch, (err?: Error) => (err ? fail(err) : ok())));
}

describe('state and sessions survive a restart of the hub', () => {
  let dir: string;
  let hub: RunningHub | undefined;
  const devices: DeviceClient[] = [];

  beforeAll(async () => {
    dir = await tempDir();
  });
  afterEach(async () => {
    for (const d of devices.splice(0)) await d.close().catch(() => undefined);
    await hub?.close();
    hub = undefined;
  });
  afterAll(async () => {
    await removeDir(dir);
  });

  it('keeps the registry, twins, CA and policy key in DIR', async () => {
    hub = await startTestHub(dir);
    const first = hub.info;
    const cs = await addDevice(dir, 'keep-1');
    const device = await deviceClient(hub, cs);
    devices.push(device);
    await device.open();
    await reported(await device.getTwin(), { firmwareVersion: '1.2.3' });
    const registry = serviceRegistry(hub.info);
    const { responseBody: before } = await registry.getTwin('keep-1');
    await registry.updateTwin('keep-1', { tags: { site: 'lab' }, properties: { desired: { want: 'x' } } }, before.etag);
    const caBefore = await readFile(first.caFile, 'utf8');
    await device.close();
    devices.pop();
    await hub.close();

    hub = await startTestHub(dir, { mqttPort: first.mqttPort, httpsPort: first.httpsPort });
    expect(hub.info.serviceConnectionString).toBe(first.serviceConnectionString);
    expect(await readFile(hub.info.caFile, 'utf8')).toBe(caBefore);
    const { responseBody: after } = await serviceRegistry(hub.info).getTwin('keep-1');
    expect(after.properties.reported.firmwareVersion).toBe('1.2.3');
    expect(after.properties.desired.want).toBe('x');
    expect(after.tags).toEqual({ site: 'lab' });
    // The same connection string still works: the device's key was kept.
    expect(await addDevice(dir, 'keep-1')).toBe(cs);
    const again = await deviceClient(hub, cs);
    devices.push(again);
    await again.open();
    const twin = await again.getTwin();
    expect(twin.properties.reported.firmwareVersion).toBe('1.2.3');
  });

  it('a device whose hub went away and came back still gets twin answers (clean:false session kept)', async () => {
    hub = await startTestHub(dir);
    const ports = { mqttPort: hub.info.mqttPort, httpsPort: hub.info.httpsPort };
    const device = await deviceClient(hub, await addDevice(dir, 'roamer'));
    devices.push(device);
    await device.open();
    // Like the daemon: a method handler makes the SDK reconnect by itself after a drop.
    device.onDeviceMethod('ping', (_req, res) => void res.send(200, 'pong'));
    const twin = await device.getTwin();
    const afterRestart = new Promise<Record<string, unknown>>((ok) => {
      twin.on('properties.desired', (d: Record<string, unknown>) => {
        if (d.after) ok(d);
      });
    });
    await reported(twin, { step: 1 });
    await hub.close();
    expect(hub.connectedDevices()).toEqual([]);

    hub = await startTestHub(dir, ports);
    const running = hub;
    // The SDK reconnects by itself; it re-subscribes only to methods, so twin answers depend on the kept session.
    await eventually(() => running.connectedDevices().includes('roamer'), 30_000, 'the device to reconnect');
    const fresh = await within(device.getTwin(), 10_000, 'twin GET after the restart');
    expect(fresh.properties.reported.step).toBe(1);
    await reported(fresh, { step: 2 });
    const registry = serviceRegistry(hub.info);
    const { responseBody } = await registry.getTwin('roamer');
    expect(responseBody.properties.reported.step).toBe(2);
    // Desired pushes reach it too: its desired subscription also lived on in the session.
    await registry.updateTwin('roamer', { properties: { desired: { after: 'restart' } } }, '*');
    expect(await within(afterRestart, 10_000, 'the desired push')).toMatchObject({ after: 'restart' });
  });
});
