import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import mqtt from 'mqtt';
import { addDevice, type RunningHub } from '../../src/hub-emulator/index.js';
import { generateKey, makeSasToken } from '../../src/hub-emulator/sas.js';
import { serviceRegistry } from '../../src/service/hub-connection.js';
import { deviceClient, eventually, rawRest, removeDir, startTestHub, tempDir } from './helpers.js';

const now = () => Math.floor(Date.now() / 1000);
const keyOf = (cs: string) => /SharedAccessKey=([^;]+)/.exec(cs)![1];

describe('authentication is checked for real', () => {
  let dir: string;
  let hub: RunningHub;
  let ca: string;
  let good: string;

  beforeAll(async () => {
    dir = await tempDir();
    hub = await startTestHub(dir);
    ca = await readFile(hub.info.caFile, 'utf8');
    good = await addDevice(dir, 'auth-1');
  });
  afterAll(async () => {
    await hub?.close();
    await removeDir(dir);
  });

  const resource = (id: string) => `${hub.info.host}:${hub.info.mqttPort}/devices/${id}`;

  async function openFails(client: InstanceType<typeof deviceSdk.Client>): Promise<Error> {
    await client.setOptions({ ca });
    const err = await client.open().then(
      () => undefined,
      (e: Error) => e,
    );
    await client.close().catch(() => undefined);
    expect(err, 'open() should have been refused').toBeInstanceOf(Error);
    return err as Error;
  }

  it('accepts the right key', async () => {
    const client = await deviceClient(hub, good);
    await client.open();
    expect(hub.connectedDevices()).toContain('auth-1');
    await client.close();
  });

  it('refuses a wrong key', async () => {
    const err = await openFails(deviceSdk.Client.fromConnectionString(good.replace(keyOf(good), generateKey()), deviceMqtt.Mqtt));
    expect(err.name).toBe('UnauthorizedError');
  });

  it('refuses an expired token', async () => {
    const sas = makeSasToken(resource('auth-1'), keyOf(good), now() - 10);
    const err = await openFails(deviceSdk.Client.fromSharedAccessSignature(sas, deviceMqtt.Mqtt));
    expect(err.name).toBe('UnauthorizedError');
  });

  it('accepts a valid token given as a shared access signature', async () => {
    const client = deviceSdk.Client.fromSharedAccessSignature(makeSasToken(resource('auth-1'), keyOf(good), now() + 600), deviceMqtt.Mqtt);
    await client.setOptions({ ca });
    await client.open();
    await client.close();
  });

  it('drops a connection when its token expires', async () => {
    // A bare SAS (no key) cannot be renewed by the SDK, so the link must end at the token's expiry.
    const client = deviceSdk.Client.fromSharedAccessSignature(makeSasToken(resource('auth-1'), keyOf(good), now() + 2), deviceMqtt.Mqtt);
    await client.setOptions({ ca });
    await client.open();
    expect(hub.connectedDevices()).toContain('auth-1');
    await eventually(() => !hub.connectedDevices().includes('auth-1'), 6000, 'the expired link to be dropped');
    await client.close().catch(() => undefined);
  });

  it('refuses a token whose resource names another device', async () => {
    const other = await addDevice(dir, 'auth-other');
    // Signed with the right key of auth-other, but for auth-1's resource, presented as auth-other.
    const token = makeSasToken(resource('auth-1'), keyOf(other), now() + 600);
    const refused = await rawConnect('auth-other', `${hub.info.host}/auth-other/?api-version=2021-04-12`, token);
    expect(refused).toMatch(/Not authorized/i);
  });

  it('refuses an unknown device', async () => {
    const cs = `HostName=${hub.info.host}:${hub.info.mqttPort};DeviceId=nobody;SharedAccessKey=${generateKey()}`;
    const err = await openFails(deviceSdk.Client.fromConnectionString(cs, deviceMqtt.Mqtt));
    expect(err.name).toBe('UnauthorizedError');
  });

  it('refuses a disabled device, and drops it when it is disabled while connected', async () => {
    const cs = await addDevice(dir, 'auth-disabled');
    const client = await deviceClient(hub, cs);
    await client.open();
    const registry = serviceRegistry(hub.info);
    await registry.update({ deviceId: 'auth-disabled', status: 'disabled' });
    await eventually(() => !hub.connectedDevices().includes('auth-disabled'), 5000, 'the disabled device to be dropped');
    await client.close().catch(() => undefined);
    const err = await openFails(deviceSdk.Client.fromConnectionString(cs, deviceMqtt.Mqtt));
    expect(err.name).toBe('UnauthorizedError');
  });

  it('refuses a client id that does not match the username', async () => {
    const token = makeSasToken(resource('auth-1'), keyOf(good), now() + 600);
    const refused = await rawConnect('someone-else', `${hub.info.host}/auth-1/?api-version=2021-04-12`, token);
    expect(refused).toMatch(/Identifier rejected/i);
    // The same credentials with the matching client id are fine: only the mismatch was refused.
    expect(await rawConnect('auth-1', `${hub.info.host}/auth-1/?api-version=2021-04-12`, token)).toBe('connected');
  });

  it("grants only the device's own IoT Hub topics", async () => {
    const token = makeSasToken(resource('auth-1'), keyOf(good), now() + 600);
    const client = mqtt.connect(`mqtts://${hub.info.host}:${hub.info.mqttPort}`, {
      clientId: 'auth-1',
      username: `${hub.info.host}/auth-1/?api-version=2021-04-12`,
      password: token,
      ca,
      reconnectPeriod: 0,
      clean: true,
    });
    await new Promise<void>((ok, fail) => {
      client.on('connect', () => ok());
      client.on('error', fail);
    });
    const subscribe = (topics: string[]) =>
      new Promise<number[]>((ok, fail) => client.subscribe(topics, { qos: 0 }, (err, granted) => (err ? fail(err) : ok(granted.map((g) => g.qos)))));
    expect(await subscribe(['#', '$iothub/#', 'devices/auth-other/messages/devicebound/#', '$iothub/methods/res/#'])).toEqual([128, 128, 128, 128]);
    expect(await subscribe(['$iothub/methods/POST/#', '$iothub/twin/res/#', 'devices/auth-1/messages/devicebound/#'])).toEqual([0, 0, 0]);
    client.end(true);
  });

  /** A raw MQTT 3.1.1 CONNECT, to send what the SDK never would. Resolves 'connected' or the refusal. */
  function rawConnect(clientId: string, username: string, password: string): Promise<string> {
    return new Promise((resolve) => {
      const client = mqtt.connect(`mqtts://${hub.info.host}:${hub.info.mqttPort}`, {
        clientId,
        username,
        password,
        ca,
        protocolVersion: 4,
        reconnectPeriod: 0,
        clean: true,
      });
      client.on('connect', () => {
        client.end(true);
        resolve('connected');
      });
      client.on('error', (err) => {
        client.end(true);
        resolve(err.message);
      });
    });
  }

  describe('service API', () => {
    it('refuses a wrong policy key through the SDK', async () => {
      const wrong = hub.info.serviceConnectionString.replace(keyOf(hub.info.serviceConnectionString), generateKey());
      const err = await serviceRegistry({ ...hub.info, serviceConnectionString: wrong }).get('auth-1').then(
        () => undefined,
        (e: Error) => e,
      );
      expect(err?.name).toBe('UnauthorizedError');
    });

    it('refuses a missing, expired, or unknown-policy token with 401 IotHubUnauthorizedAccess', async () => {
      const key = keyOf(hub.info.serviceConnectionString);
      const cases = [
        null,
        makeSasToken(hub.info.host, key, now() - 5, 'iothubowner'),
        makeSasToken(hub.info.host, key, now() + 600, 'registryRead'),
        makeSasToken('otherhub.example.com', key, now() + 600, 'iothubowner'),
        'Bearer abc',
      ];
      for (const authorization of cases) {
        const reply = await rawRest(hub, 'GET', '/devices/auth-1?api-version=2021-04-12', { authorization });
        expect(reply.status, String(authorization)).toBe(401);
        expect((reply.json as { Message: string }).Message).toMatch(/^ErrorCode:IotHubUnauthorizedAccess;/);
      }
      const ok = await rawRest(hub, 'GET', '/devices/auth-1?api-version=2021-04-12');
      expect(ok.status).toBe(200);
    });
  });
});
