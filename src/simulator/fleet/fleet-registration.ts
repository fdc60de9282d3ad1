import { addDevice, readHubInfo } from '../../hub-emulator/index.js';
import { serviceRegistry } from '../../service/hub-connection.js';
import { ensureConnectionString } from '../connection-string.js';
import { hubCaFile } from '../daemon-config.js';

/** `--tag key=value`: a dotted key nests (`piota.ring=canary` → `{piota: {ring: "canary"}}`). */
export function parseTags(pairs: readonly string[]): Record<string, unknown> {
  const tags: Record<string, unknown> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    const key = eq > 0 ? pair.slice(0, eq) : '';
    if (!key || key.split('.').some((k) => !/^[A-Za-z_][A-Za-z0-9_-]{0,63}$/.test(k))) {
      throw new Error(`--tag '${pair}' must be key=value, the key made of names (letters, digits, _ and -, starting with a letter or _) joined by dots`);
    }
    const path = key.split('.');
    let node = tags;
    for (const name of path.slice(0, -1)) {
      const child = node[name];
      if (typeof child !== 'object' || child === null) node[name] = {};
      node = node[name] as Record<string, unknown>;
    }
    node[path[path.length - 1]] = pair.slice(eq + 1);
  }
  return tags;
}

/** Registers the device with the emulator in `hubDir` and writes `<stateDir>/connection-string`. */
export async function registerFleetDevice(hubDir: string, deviceId: string, stateDir: string): Promise<void> {
  await ensureConnectionString(stateDir, hubDir, deviceId, addDevice);
}

/**
 * Sets the tags on each device's twin through the hub's service API (azure-iothub's Registry, as a
 * person's tooling would), a few at a time, and waits out IoT Hub's 429 when the hub throttles.
 */
export async function tagFleet(hubDir: string, deviceIds: readonly string[], tags: Record<string, unknown>, concurrency = 4): Promise<void> {
  if (deviceIds.length === 0 || Object.keys(tags).length === 0) return;
  const info = await readHubInfo(hubDir);
  if (!info) throw new Error(`${hubDir}: no hub.json; start the hub first (piota hub start --dir ${hubDir}) to tag the devices`);
  const registry = serviceRegistry({ serviceConnectionString: info.serviceConnectionString, caFile: await hubCaFile(hubDir), httpsPort: info.httpsPort });
  let next = 0;
  const worker = async () => {
    while (next < deviceIds.length) {
      const id = deviceIds[next++];
      for (let attempt = 1; ; attempt++) {
        try {
          await registry.updateTwin(id, { tags }, '*');
          break;
        } catch (err) {
          const status = (err as { response?: { statusCode?: number } }).response?.statusCode;
          if (status !== 429 || attempt >= 20) throw new Error(`cannot tag device '${id}': ${(err as Error).message}`);
          await new Promise((r) => setTimeout(r, Math.min(5000, 250 * 2 ** attempt)));
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, deviceIds.length) }, worker));
}
