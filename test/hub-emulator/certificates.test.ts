import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile, stat } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import { addDevice } from '../../src/hub-emulator/index.js';
import { deviceClient, removeDir, startTestHub, tempDir } from './helpers.js';

describe("the hub's own CA and server certificate", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(async () => {
    await removeDir(dir);
  });

  it('makes a CA and a server certificate for the host on first start, keeps the CA, remakes the server certificate for a new host', async () => {
    const hub = await startTestHub(dir);
    const caPem = await readFile(hub.info.caFile, 'utf8');
    const ca = new X509Certificate(caPem);
    expect(ca.ca).toBe(true);
    const server = new X509Certificate(await readFile(`${dir}/tls/server.pem`, 'utf8'));
    expect(server.verify(ca.publicKey)).toBe(true);
    expect(server.subjectAltName).toContain('DNS:localhost');
    expect(server.subjectAltName).toContain('IP Address:127.0.0.1');
    expect((await stat(`${dir}/tls/ca.key`)).mode & 0o777).toBe(0o600);
    expect((await stat(`${dir}/tls/server.key`)).mode & 0o777).toBe(0o600);
    await hub.close();

    const renamed = await startTestHub(dir, { host: 'piota-hub.example', listenAddress: '127.0.0.1' });
    expect(renamed.info.host).toBe('piota-hub.example');
    expect(await readFile(renamed.info.caFile, 'utf8')).toBe(caPem);
    const again = new X509Certificate(await readFile(`${dir}/tls/server.pem`, 'utf8'));
    expect(again.subjectAltName).toContain('DNS:piota-hub.example');
    expect(again.subjectAltName).toContain('DNS:localhost');
    expect(again.verify(ca.publicKey)).toBe(true);
    expect(await addDevice(dir, 'cert-1')).toMatch(/^HostName=piota-hub\.example:\d+;/);
    await renamed.close();
  });

  it('serves devices that reach it by IP address (the SAN holds 127.0.0.1)', async () => {
    const hub = await startTestHub(dir, { host: '127.0.0.1' });
    const cs = await addDevice(dir, 'cert-ip');
    expect(cs).toMatch(/^HostName=127\.0\.0\.1:\d+;DeviceId=cert-ip;/);
    const device = await deviceClient(hub, cs);
    await device.open();
    expect(hub.connectedDevices()).toEqual(['cert-ip']);
    await device.close();
    await hub.close();
  });
});
