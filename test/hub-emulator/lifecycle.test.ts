import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect as tcpConnect, createServer } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { readFile, writeFile } from 'node:fs/promises';
import { addDevice } from '../../src/hub-emulator/index.js';
import { deviceClient, rawRest, removeDir, startTestHub, tempDir } from './helpers.js';

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

  it('survives garbage on both ports and still serves devices', async () => {
    const hub = await startTestHub(dir);
    const ca = await readFile(hub.info.caFile, 'utf8');
    // Not TLS at all.
    await new Promise<void>((ok) => {
      const s = tcpConnect(hub.info.mqttPort, '127.0.0.1', () => s.end('GET / HTTP/1.0\r\n\r\n'));
      s.on('close', () => ok());
      s.on('error', () => undefined);
    });
    // TLS, then bytes that are not MQTT.
    await new Promise<void>((ok) => {
      const s = tlsConnect({ host: hub.info.host, port: hub.info.mqttPort, ca, servername: hub.info.host }, () => s.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3])));
      s.on('close', () => ok());
      s.on('error', () => undefined);
    });
    // A body far past any limit.
    const huge = await rawRest(hub, 'PUT', '/devices/x?api-version=2021-04-12', { body: JSON.stringify({ pad: 'x'.repeat(400 * 1024) }) });
    expect(huge.status).toBe(413);
    const device = await deviceClient(hub, await addDevice(dir, 'after-garbage'));
    await device.open();
    expect(hub.connectedDevices()).toContain('after-garbage');
    await device.close();
    await hub.close();
  });

  it('skips a damaged device file, says so, and serves the others', async () => {
    await addDevice(dir, 'healthy');
    await writeFile(`${dir}/devices/broken.json`, '{"schema": 1, "data": {"deviceId": 7}}');
    await writeFile(`${dir}/devices/garbage.json`, 'not json');
    const lines: string[] = [];
    const hub = await startTestHub(dir, { log: (m) => lines.push(m) });
    expect(lines.filter((l) => l.includes('skipping device file'))).toHaveLength(2);
    expect(lines.join('\n')).toContain('garbage.json');
    const reply = await rawRest(hub, 'GET', '/devices?api-version=2021-04-12');
    expect(reply.status).toBe(200);
    expect((reply.json as Array<{ deviceId: string }>).map((d) => d.deviceId)).toContain('healthy');
    await hub.close();
  });
});
