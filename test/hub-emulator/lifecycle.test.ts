import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer } from 'node:net';
import { addDevice } from '../../src/hub-emulator/index.js';
import { deviceClient, removeDir, startTestHub, tempDir } from './helpers.js';

function activeResources(): string[] {
  return process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap' && r !== 'FSReqCallback').sort();
}

describe('starting and stopping', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(async () => {
    await removeDir(dir);
  });

  it('releases its ports and every timer on close, so it can start again on the same ports', async () => {
    const warm = await startTestHub(dir); // first start makes the CA; do it before measuring
    await warm.close();
    await new Promise((r) => setTimeout(r, 100));
    const baseline = activeResources();
    let ports = { mqttPort: 0, httpsPort: 0 };
    for (let round = 0; round < 3; round++) {
      const hub = await startTestHub(dir, ports);
      if (round > 0) expect({ mqttPort: hub.info.mqttPort, httpsPort: hub.info.httpsPort }).toEqual(ports);
      ports = { mqttPort: hub.info.mqttPort, httpsPort: hub.info.httpsPort };
      const device = await deviceClient(hub, await addDevice(dir, 'life-1'));
      await device.open();
      await device.close();
      await hub.close();
      await hub.close(); // a second close is harmless
    }
    await new Promise((r) => setTimeout(r, 100));
    expect(activeResources()).toEqual(baseline);
  });

  it('says which port is taken instead of crashing', async () => {
    const blocker = createServer();
    await new Promise<void>((ok) => blocker.listen(0, '127.0.0.1', () => ok()));
    const port = (blocker.address() as { port: number }).port;
    await expect(startTestHub(dir, { mqttPort: port })).rejects.toThrow(`port ${port} on 127.0.0.1 is already in use`);
    await expect(startTestHub(dir, { httpsPort: port })).rejects.toThrow(`port ${port} on 127.0.0.1 is already in use`);
    blocker.close();
  });
});
