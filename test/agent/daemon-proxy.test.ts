import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { addDevice, type RunningHub } from '../../src/hub-emulator/index.js';
import { startDaemon } from '../../src/agent/daemon.js';
import { validateConfig } from '../../src/agent/config.js';
import { createBundle } from '../../src/bundle/create.js';
import { generateKeyPair } from '../../src/bundle/keys.js';
import { serviceClient, serviceRegistry } from '../../src/service/hub-connection.js';
import { removeDir, startTestHub, tempDir } from '../hub-emulator/helpers.js';
import { startTestFileServer, type TestFileServer } from '../helpers/https-file-server.js';
import { waitFor } from '../helpers/wait-for.js';
import { startConnectProxy, type TestConnectProxy } from '../download/connect-proxy.js';
import { FakeBoot, silentLogger } from './fakes/ports.js';

// A Pi behind a corporate proxy where port 8883 is closed: the real daemon (in this process, with a
// stand-in boot firmware) set to `hub.transport: "mqtt-ws"` and `hub.proxy`/`download.proxy` reaches the
// emulator over MQTT/WebSockets and downloads its bundle, both through a real CONNECT proxy.
let dir: string;
let hub: RunningHub;
let files: TestFileServer;
let proxy: TestConnectProxy;
const key = generateKeyPair();

beforeAll(async () => {
  dir = await tempDir();
  hub = await startTestHub(join(dir, 'hub'));
  files = await startTestFileServer();
  proxy = await startConnectProxy();
}, 30_000);
afterAll(async () => {
  await proxy?.close();
  await files?.close();
  await hub?.close();
  await removeDir(dir);
});

describe('the daemon behind a proxy', { timeout: 120_000 }, () => {
  it('reaches the hub over mqtt-ws and downloads through the proxy, as configured', async () => {
    const id = 'proxied-pi';
    const stateDir = join(dir, id, 'state');
    await mkdir(stateDir, { recursive: true });
    // mqtt-ws goes to the hub's HTTPS port (IoT Hub's 443): the connection string names it.
    const cs = (await addDevice(join(dir, 'hub'), id)).replace(`:${hub.info.mqttPort};`, `:${hub.info.httpsPort};`);
    await writeFile(join(stateDir, 'connection-string'), cs);
    await writeFile(join(dir, 'key.pub'), key.publicKeyPem);
    const image = Buffer.alloc(64 * 1024, 7);
    await writeFile(join(dir, 'rootfs.img'), image);
    for (const f of ['a', 'b']) await writeFile(join(dir, id, f), Buffer.alloc(128 * 1024));
    await createBundle({
      out: join(dir, 'fw.piota'), version: '2.0.0', securityVersion: 0, compatible: ['raspberrypi4-64'],
      payloads: [{ name: 'rootfs', file: join(dir, 'rootfs.img') }], chunkSize: 16 * 1024, compression: 'none', signingKeys: [key.privateKeyPem],
    });
    files.add('fw.piota', join(dir, 'fw.piota'));
    const config = validateConfig({
      model: 'raspberrypi4-64',
      stateDir,
      runtimeDir: join(dir, id, 'run'),
      trustedKeys: [join(dir, 'key.pub')],
      hubCaFile: hub.info.caFile,
      downloadCaFile: files.caFile,
      slots: { A: { rootfs: join(dir, id, 'a') }, B: { rootfs: join(dir, id, 'b') } },
      boot: { backend: 'tryboot', autobootFile: join(dir, id, 'autoboot.txt'), bootPartitions: { A: 2, B: 3 } },
      hub: { transport: 'mqtt-ws', proxy: proxy.url },
      download: { proxy: proxy.url },
    });
    const daemon = await startDaemon(config, silentLogger, '0.2.0-test', { boot: new FakeBoot() });
    try {
      await waitFor('the proxied device to report', async () => {
        const { responseBody } = await serviceRegistry(hub.info).getTwin(id);
        return (responseBody.properties.reported as Record<string, any>).piota?.bootedSlot === 'A';
      }, 20_000);
      expect(proxy.tunnels).toContain(`localhost:${hub.info.httpsPort}`);
      expect(hub.connectedDevices()).toContain(id);
      // IoT Hub answers 404 while it does not have the device's method subscription yet; callers retry.
      const { result } = await waitFor('the device to take the method', () =>
        serviceClient(hub.info).invokeDeviceMethod(id, { methodName: 'firmwareUpdate', payload: { fwPackageUri: files.url('fw.piota') }, responseTimeoutInSeconds: 30 }), 45_000);
      expect((result as { status: number }).status).toBe(200);
      // Downloaded and read back (the stand-in firmware never reboots: the update waits in applying).
      await waitFor('the download through the proxy', async () => {
        const { responseBody } = await serviceRegistry(hub.info).getTwin(id);
        return (responseBody.properties.reported as Record<string, any>).iothubDM?.firmwareUpdate?.status === 'applying';
      }, 20_000);
      expect(proxy.tunnels).toContain(`localhost:${files.port}`);
      expect(files.requests.some((r) => r.path === 'fw.piota')).toBe(true);
    } finally {
      await daemon.stop();
    }
  });
});
