import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import type { Client as DeviceClient } from 'azure-iot-device';
import { addDevice, type RunningHub } from '../../src/hub-emulator/index.js';
import { serviceClient, serviceRegistry } from '../../src/service/hub-connection.js';
import { deviceClient, eventually, removeDir, startTestHub, tempDir } from './helpers.js';

describe("the SDKs' own sample calls against the emulator", () => {
  let dir: string;
  let hub: RunningHub;
  let device: DeviceClient;

  beforeAll(async () => {
    dir = await tempDir();
    hub = await startTestHub(dir);
    device = await deviceClient(hub, await addDevice(dir, 'pi-1'));
    await device.open();
  });

  afterAll(async () => {
    await device?.close();
    await hub?.close();
    await removeDir(dir);
  });

  it('writes hub.json with the bound ports and a bare service HostName', async () => {
    const info = JSON.parse(await readFile(`${dir}/hub.json`, 'utf8'));
    expect(info).toEqual(hub.info);
    expect(info.mqttPort).toBeGreaterThan(0);
    expect(info.httpsPort).toBeGreaterThan(0);
    expect(info.serviceConnectionString).toMatch(/^HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=.+$/);
    expect(hub.connectedDevices()).toEqual(['pi-1']);
  });

  it('device getTwin and reported update; service getTwin sees the reported value', async () => {
    const twin = await device.getTwin();
    expect(twin.properties.desired.$version).toBe(1);
    await new Promise<void>((ok, fail) =>
      twin.properties.reported.update({ firmwareVersion: '1.0.0', nested: { a: 1 } }, (err?: Error) => (err ? fail(err) : ok())),
    );
    const registry = serviceRegistry(hub.info);
    const { responseBody: seen } = await registry.getTwin('pi-1');
    expect(seen.properties.reported.firmwareVersion).toBe('1.0.0');
    expect((seen.properties.reported as unknown as { nested: { a: number } }).nested.a).toBe(1);
  });

  it('service updateTwin pushes desired properties to the device', async () => {
    const twin = await device.getTwin();
    const got = new Promise<Record<string, unknown>>((ok) => twin.on('properties.desired', (delta: Record<string, unknown>) => {
      if (delta.fwTarget) ok(delta);
    }));
    const registry = serviceRegistry(hub.info);
    const { responseBody: current } = await registry.getTwin('pi-1');
    const { responseBody: updated } = await registry.updateTwin('pi-1', { properties: { desired: { fwTarget: '2.0.0' } } }, current.etag);
    expect(updated.properties.desired.fwTarget).toBe('2.0.0');
    const delta = await got;
    expect(delta.fwTarget).toBe('2.0.0');
    expect(delta.$version).toBe(updated.properties.desired.$version);
  });

  it('service invokeDeviceMethod reaches onDeviceMethod and returns its answer', async () => {
    device.onDeviceMethod('firmwareUpdate', (request, response) => {
      void response.send(200, { echo: request.payload, method: request.methodName });
    });
    await eventually(async () => true);
    const client = serviceClient(hub.info);
    const { result } = await client.invokeDeviceMethod('pi-1', { methodName: 'firmwareUpdate', payload: { fwPackageUri: 'https://x/y' }, responseTimeoutInSeconds: 10 });
    expect(result).toEqual({ status: 200, payload: { echo: { fwPackageUri: 'https://x/y' }, method: 'firmwareUpdate' } });
  });
});
