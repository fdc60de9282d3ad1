import { afterAll, beforeAll } from 'vitest';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import type { Client as DeviceClient } from 'azure-iot-device';
import { startHub, type HubOptions, type RunningHub } from '../../src/hub-emulator/index.js';

/** A temp directory for one test file, removed afterwards. */
export async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'piota-hub-'));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** A hub on ephemeral ports. */
export function startTestHub(dir: string, options: Partial<HubOptions> = {}): Promise<RunningHub> {
  return startHub({ dir, mqttPort: 0, httpsPort: 0, ...options });
}

/** An unmodified device SDK client over MQTT/TLS, trusting the hub's CA. */
export async function deviceClient(hub: RunningHub, connectionString: string): Promise<DeviceClient> {
  const client = deviceSdk.Client.fromConnectionString(connectionString, deviceMqtt.Mqtt);
  await client.setOptions({ ca: await readFile(hub.info.caFile, 'utf8') });
  return client;
}

/** Waits until `check` holds (polling), or fails after `ms`. */
export async function eventually(check: () => boolean | Promise<boolean>, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Fails after `ms` instead of hanging (the device SDK never calls back on some lost requests). */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, fail) => {
    timer = setTimeout(() => fail(new Error(`no answer within ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export interface RawReply {
  status: number;
  headers: import('node:http').IncomingHttpHeaders;
  text: string;
  json: unknown;
}

/** A raw HTTPS call to the service API (to send what the SDK never would). */
export async function rawRest(
  hub: RunningHub,
  method: string,
  path: string,
  options: { body?: string; headers?: Record<string, string>; authorization?: string | null } = {},
): Promise<RawReply> {
  const { request } = await import('node:https');
  const { makeSasToken } = await import('../../src/hub-emulator/sas.js');
  const ca = await readFile(hub.info.caFile, 'utf8');
  const key = /SharedAccessKey=([^;]+)/.exec(hub.info.serviceConnectionString)![1];
  const auth = options.authorization === undefined ? makeSasToken(hub.info.host, key, Math.floor(Date.now() / 1000) + 600, 'iothubowner') : options.authorization;
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: hub.info.host,
        port: hub.info.httpsPort,
        method,
        path,
        ca,
        headers: { ...(auth ? { Authorization: auth } : {}), ...(options.body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...options.headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = text ? JSON.parse(text) : undefined;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

export interface SuiteHub {
  dir: string;
  hub: RunningHub;
  /** The hub's CA (PEM). */
  ca: string;
  /** The hub's log lines so far. */
  log: string[];
}

/** A hub for the calling describe block, its log collected: started before its tests, closed after them. */
export function hubForSuite(): SuiteHub {
  const suite = { log: [] as string[] } as SuiteHub;
  beforeAll(async () => {
    suite.dir = await tempDir();
    suite.hub = await startTestHub(suite.dir, { log: (m) => suite.log.push(m) });
    suite.ca = await readFile(suite.hub.info.caFile, 'utf8');
  });
  afterAll(async () => {
    await suite.hub?.close();
    if (suite.dir) await removeDir(suite.dir);
  });
  return suite;
}

/**
 * azure-iothub's JobClient on the Registry's REST client. Its constructor installs a default https
 * agent (port 443, public CAs) on that client, so the agent with the hub's port and CA is set again.
 */
export async function jobClient(hub: RunningHub): Promise<import('azure-iothub').JobClient> {
  const { Agent } = await import('node:https');
  const { default: iothub } = await import('azure-iothub');
  const { serviceRegistry } = await import('../../src/service/hub-connection.js');
  type Rac = ConstructorParameters<typeof iothub.JobClient>[0] & { setOptions(o: unknown): void };
  const rac = (serviceRegistry(hub.info) as unknown as { _restApiClient: Rac })._restApiClient;
  const jobs = new iothub.JobClient(rac);
  const agent = new Agent({ keepAlive: true, ca: await readFile(hub.info.caFile, 'utf8') });
  (agent as InstanceType<typeof Agent> & { defaultPort: number }).defaultPort = hub.info.httpsPort;
  rac.setOptions({ http: { agent } });
  return jobs;
}
