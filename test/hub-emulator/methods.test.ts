import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client as DeviceClient } from 'azure-iot-device';
import { addDevice, type RunningHub } from '../../src/hub-emulator/index.js';
import { serviceClient } from '../../src/service/hub-connection.js';
import { deviceClient, rawRest, removeDir, startTestHub, tempDir } from './helpers.js';

const API = 'api-version=2021-04-12';
type Failure = Error & { responseBody?: string; response?: { statusCode: number } };

async function failure(p: Promise<unknown>): Promise<Failure> {
  const err = await p.then(
    () => undefined,
    (e: Failure) => e,
  );
  expect(err, 'the call should have failed').toBeInstanceOf(Error);
  return err as Failure;
}

describe('direct methods', () => {
  let dir: string;
  let hub: RunningHub;
  let a: DeviceClient;
  let b: DeviceClient;
  const seen: string[] = [];

  beforeAll(async () => {
    dir = await tempDir();
    hub = await startTestHub(dir);
    a = await deviceClient(hub, await addDevice(dir, 'meth-a'));
    b = await deviceClient(hub, await addDevice(dir, 'meth-b'));
    await Promise.all([a.open(), b.open()]);
    for (const [name, d] of [['meth-a', a], ['meth-b', b]] as const) {
      d.onDeviceMethod('hello', (req, res) => {
        seen.push(name);
        void res.send(201, { from: name, got: req.payload });
      });
      d.onDeviceMethod('silent', () => {
        seen.push(`${name}:silent`);
      });
    }
    await addDevice(dir, 'meth-offline');
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await hub?.close();
    await removeDir(dir);
  });

  it('routes a call to the named device only and returns {status, payload}', async () => {
    seen.length = 0;
    const { result } = await serviceClient(hub.info).invokeDeviceMethod('meth-b', { methodName: 'hello', payload: [1, 'two'], responseTimeoutInSeconds: 10 });
    expect(result).toEqual({ status: 201, payload: { from: 'meth-b', got: [1, 'two'] } });
    await new Promise((r) => setTimeout(r, 100));
    expect(seen).toEqual(['meth-b']);
  });

  it('answers 404 DeviceNotOnline for a registered device that is not connected, DeviceNotFound for an unknown one', async () => {
    const offline = await failure(serviceClient(hub.info).invokeDeviceMethod('meth-offline', { methodName: 'hello', payload: null, responseTimeoutInSeconds: 5 }));
    expect(offline.response?.statusCode).toBe(404);
    expect(offline.responseBody).toMatch(/ErrorCode:DeviceNotOnline;/);
    const unknown = await failure(serviceClient(hub.info).invokeDeviceMethod('meth-nobody', { methodName: 'hello', payload: null, responseTimeoutInSeconds: 5 }));
    expect(unknown.name).toBe('DeviceNotFoundError');
  });

  it('answers 504 GatewayTimeout when the device does not answer in responseTimeoutInSeconds', async () => {
    const started = Date.now();
    const err = await failure(serviceClient(hub.info).invokeDeviceMethod('meth-a', { methodName: 'silent', payload: null, responseTimeoutInSeconds: 5 }));
    const took = Date.now() - started;
    expect(err.name).toBe('GatewayTimeoutError');
    expect(err.responseBody).toMatch(/ErrorCode:GatewayTimeout;/);
    expect(took).toBeGreaterThanOrEqual(4900);
    expect(took).toBeLessThan(15_000);
  });

  it('refuses a payload over 128 KB, and bad invocation bodies, without reaching the device', async () => {
    seen.length = 0;
    const big = await rawRest(hub, 'POST', `/twins/meth-a/methods?${API}`, { body: JSON.stringify({ methodName: 'hello', payload: 'x'.repeat(129 * 1024) }) });
    expect(big.status).toBe(413);
    expect((big.json as { Message: string }).Message).toMatch(/^ErrorCode:RequestEntityTooLarge;/);
    const noName = await rawRest(hub, 'POST', `/twins/meth-a/methods?${API}`, { body: JSON.stringify({ payload: 1 }) });
    expect(noName.status).toBe(400);
    const badTimeout = await rawRest(hub, 'POST', `/twins/meth-a/methods?${API}`, { body: JSON.stringify({ methodName: 'hello', responseTimeoutInSeconds: 1000 }) });
    expect(badTimeout.status).toBe(400);
    const malformed = await rawRest(hub, 'POST', `/twins/meth-a/methods?${API}`, { body: '{"methodName":' });
    expect(malformed.status).toBe(400);
    expect(seen).toEqual([]);
    const fits = await rawRest(hub, 'POST', `/twins/meth-a/methods?${API}`, { body: JSON.stringify({ methodName: 'hello', payload: 'y'.repeat(100 * 1024) }) });
    expect(fits.status).toBe(200);
  });

  it('answers 404 DeviceNotOnline when the device drops before answering', async () => {
    const flaky = await deviceClient(hub, await addDevice(dir, 'meth-flaky'));
    await flaky.open();
    flaky.onDeviceMethod('hang', () => {
      void flaky.close();
    });
    const err = await failure(serviceClient(hub.info).invokeDeviceMethod('meth-flaky', { methodName: 'hang', payload: null, responseTimeoutInSeconds: 30 }));
    expect(err.response?.statusCode).toBe(404);
    expect(err.responseBody).toMatch(/ErrorCode:DeviceNotOnline;/);
  });

  it('waits up to connectTimeoutInSeconds for a device that is about to connect', async () => {
    const late = await deviceClient(hub, await addDevice(dir, 'meth-late'));
    const call = serviceClient(hub.info).invokeDeviceMethod('meth-late', { methodName: 'hello', payload: 1, responseTimeoutInSeconds: 5, connectTimeoutInSeconds: 10 });
    await new Promise((r) => setTimeout(r, 300));
    await late.open();
    late.onDeviceMethod('hello', (_req, res) => void res.send(200, 'late but here'));
    const { result } = await call;
    expect(result).toEqual({ status: 200, payload: 'late but here' });
    await late.close();
  });
});
