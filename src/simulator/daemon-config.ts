import { readFile, stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { join, resolve } from 'node:path';
import { writeFileDurably } from '../os/durable-file.js';
import { SLOTS } from '../boot/backend.js';
import { ConfigError, validateConfig, type DaemonConfig } from '../agent/config.js';
import type { SimLayout } from './layout.js';
import type { FirmwareConfig } from './simulator.js';

/** bin/piota.js, from dist/simulator/ (installed) or src/simulator/ (tests): both two levels down. */
export const piotaBin = fileURLToPath(new URL('../../bin/piota.js', import.meta.url));

export interface SimulatedDeviceOptions {
  layout: SimLayout;
  hubDir: string;
  deviceId: string;
  pubkey: string;
  downloadCa?: string;
  version: string;
  model: string;
  /** A JSON fragment merged over the config (objects merge, everything else replaces). */
  overrides?: Record<string, unknown>;
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function mergeJson(base: Json, over: Json): Json {
  const out: Json = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = isObject(v) && isObject(out[k]) ? mergeJson(out[k] as Json, v) : v;
  return out;
}

/** The reboot commands the daemon runs: absolute node + bin paths, so they work without PATH. */
export function simulatorRebootCommands(dir: string): { rebootCommand: string[]; trybootCommand: string[] } {
  const rebootCommand = [process.execPath, piotaBin, 'simulate', 'reboot', '--dir', dir];
  return { rebootCommand, trybootCommand: [...rebootCommand, '--tryboot'] };
}

/** hub.json's CA file (docs/hub-emulator.md: `{serviceConnectionString, caFile, host, mqttPort, httpsPort}`), absolute. */
export async function hubCaFile(hubDir: string): Promise<string> {
  const path = join(hubDir, 'hub.json');
  let hub: unknown;
  try {
    hub = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new Error(`${path}: cannot read the hub's description (${(err as Error).message}); is --hub-dir a hub directory?`);
  }
  if (!isObject(hub) || typeof hub.caFile !== 'string' || hub.caFile === '') throw new Error(`${path}: caFile is missing or not a path`);
  return resolve(hubDir, hub.caFile);
}

/** The daemon config of a simulated Pi (config.example.json's shape), before overrides. */
export async function simulatedDaemonConfig(o: SimulatedDeviceOptions): Promise<Json> {
  const { layout } = o;
  const base: Json = {
    model: o.model,
    stateDir: layout.stateDir,
    runtimeDir: layout.runtimeDir,
    initialVersion: o.version,
    // A simulated slot is a raw image, not a mounted filesystem: no release file to read.
    versionFile: null,
    trustedKeys: [resolve(o.pubkey)],
    allowPlainImages: false,
    hubCaFile: await hubCaFile(o.hubDir),
    downloadCaFile: o.downloadCa ? resolve(o.downloadCa) : null,
    slots: layout.slots,
    boot: {
      backend: 'tryboot',
      autobootFile: layout.autoboot,
      bootPartitions: layout.partitions,
      deviceTreeDir: layout.deviceTreeDir,
      ...simulatorRebootCommands(layout.dir),
    },
    trialTimeoutSeconds: 300,
    progressIntervalSeconds: 5,
    maintenanceWindow: null,
    logLevel: 'info',
  };
  return o.overrides ? mergeJson(base, o.overrides) : base;
}

export async function writeDaemonConfig(path: string, config: Json): Promise<void> {
  await writeFileDurably(path, JSON.stringify(config, null, 2) + '\n');
}

/**
 * What the firmware needs from the (possibly overridden) config. The config is checked with the
 * daemon's own validator, so the simulator refuses exactly what the daemon would; `source` names the file.
 */
export function firmwareConfigOf(config: Json, source: string): FirmwareConfig {
  let c: DaemonConfig;
  try {
    c = validateConfig(config);
  } catch (err) {
    if (err instanceof ConfigError) throw new Error(`${source}: ${err.message}`);
    throw err;
  }
  const firmware: FirmwareConfig = {
    slots: { A: { boot: '', rootfs: '' }, B: { boot: '', rootfs: '' } },
    bootPartitions: c.boot.bootPartitions,
    autobootFile: c.boot.autobootFile,
    deviceTreeDir: c.boot.deviceTreeDir,
    runtimeDir: c.runtimeDir,
  };
  for (const s of SLOTS) {
    const { boot, rootfs } = c.slots[s];
    if (!boot || !rootfs) throw new Error(`${source}: slots.${s} must name a boot and a rootfs partition (the simulator lays out both)`);
    firmware.slots[s] = { boot, rootfs };
  }
  return firmware;
}

/** The daemon's argv. PIOTA_SIM_DAEMON (a test hook) replaces `node bin/piota.js daemon`: an executable path or a JSON argv array. */
export function daemonCommand(configFile: string, env: NodeJS.ProcessEnv = process.env): string[] {
  const hook = env.PIOTA_SIM_DAEMON;
  let head = [process.execPath, piotaBin, 'daemon'];
  if (hook) {
    if (hook.trim().startsWith('[')) {
      const parsed = JSON.parse(hook) as unknown;
      if (!Array.isArray(parsed) || parsed.length === 0 || !parsed.every((a) => typeof a === 'string')) {
        throw new Error('PIOTA_SIM_DAEMON must be an executable path or a JSON array of strings');
      }
      head = parsed as string[];
    } else {
      head = [hook];
    }
  }
  return [...head, '--config', configFile];
}

export async function existingFile(path: string, what: string): Promise<string> {
  const st = await stat(path).catch(() => undefined);
  if (!st?.isFile()) throw new Error(`${what} ${path}: no such file`);
  return resolve(path);
}
