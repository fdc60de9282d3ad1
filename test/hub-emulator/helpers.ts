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
