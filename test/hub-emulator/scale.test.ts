import { afterAll, describe, expect, it } from 'vitest';
import type { Client as DeviceClient } from 'azure-iot-device';
import { addDevice, type RunningHub } from '../../src/hub-emulator/index.js';
import { serviceClient } from '../../src/service/hub-connection.js';
import { deviceClient, removeDir, startTestHub, tempDir } from './helpers.js';

const COUNT = 200;

describe(`${COUNT} devices at once`, () => {
  let dir: string;
  let hub: RunningHub;
  const devices: DeviceClient[] = [];

  afterAll(async () => {
    await Promise.all(devices.map((d) => d.close().catch(() => undefined)));
    await hub?.close();
    if (dir) await removeDir(dir);
  });

  it('connects them all, and a method call reaches the one it names', async () => {
    dir = await tempDir();
    hub = await startTestHub(dir);
    const ids = Array.from({ length: COUNT }, (_, i) => `fleet-${String(i).padStart(3, '0')}`);
    const strings = await Promise.all(ids.map((id) => addDevice(dir, id)));
    const started = Date.now();
    const calls = new Map<string, number>();
    await Promise.all(
      strings.map(async (cs, i) => {
        const d = await deviceClient(hub, cs);
        devices.push(d);
        await d.open();
        d.onDeviceMethod('whoami', (_req, res) => {
          calls.set(ids[i], (calls.get(ids[i]) ?? 0) + 1);
          void res.send(200, { id: ids[i] });
        });
      }),
    );
    const elapsed = Date.now() - started;
    console.log(`${COUNT} devices connected in ${elapsed} ms`);
    expect(hub.connectedDevices().sort()).toEqual(ids);

    // Every device is subscribed to $iothub/methods/POST/#: the hub must still send to one only.
    const client = serviceClient(hub.info);
    const { result } = await client.invokeDeviceMethod('fleet-123', { methodName: 'whoami', payload: null, responseTimeoutInSeconds: 10 });
    expect(result).toEqual({ status: 200, payload: { id: 'fleet-123' } });
    await new Promise((r) => setTimeout(r, 200));
    expect([...calls]).toEqual([['fleet-123', 1]]);
  });
});
