import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pino, type Logger } from 'pino';
import { createLogger } from '../../os/logger.js';
import { ConfigError, validateConfig } from '../../agent/config.js';
import { writeFileDurably } from '../../os/durable-file.js';
import { createLayout, simLayout } from '../layout.js';
import { simulatedDaemonConfig } from '../daemon-config.js';
import { FleetDevice, type FleetDeviceSnapshot } from './fleet-device.js';
import { registerFleetDevice, tagFleet } from './fleet-registration.js';
import { pickRoles } from './seeded-picks.js';

export interface FleetOptions {
  /** The fleet's directory: one sub-directory per device (slots, state, board.json), fleet.log, fleet.json. */
  dir: string;
  /** The hub emulator's directory (devices are registered there; the agents trust its CA). */
  hubDir: string;
  count: number;
  /** Devices are `<prefix>-1` … `<prefix>-<count>`. */
  prefix: string;
  /** The bundle-signing public key the agents trust. */
  pubkey: string;
  /** Set on every device's twin (`tags`), e.g. `{ring: 'canary'}`. */
  tags?: Record<string, unknown>;
  /** Picks which devices fail or stay offline; the same seed, the same devices. Default 1. */
  seed?: number;
  downloadCa?: string;
  /** The version each device runs before its first update (default 1.0.0). */
  version?: string;
  /** The model bundles must be compatible with (default raspberrypi4-64). */
  model?: string;
  failTrialRatio?: number;
  failDownloadRatio?: number;
  offlineRatio?: number;
  /** Bytes of each slot partition file (default 64 KiB). */
  slotSize?: number;
  /** How long a failing trial hangs before the watchdog resets the board (default 2000 ms). */
  watchdogMs?: number;
  /** Reported as `piota.agentVersion`. */
  agentVersion?: string;
  /** The agents' log level (default 'info'); all agents write to DIR/fleet.log, one `device` field each. */
  logLevel?: string;
  /** Merged into each agent's config (as `piota simulate --daemon-config`). */
  daemonConfig?: Record<string, unknown>;
  /** How many devices are powered on at once (default 16). */
  startConcurrency?: number;
}

export interface Fleet {
  readonly dir: string;
  /** Every device, in order `<prefix>-1` …; `role` says its seeded part. */
  readonly devices: readonly FleetDeviceSnapshot[];
  /** The current picture of each device. */
  snapshot(): FleetDeviceSnapshot[];
  /** Powers on the given offline devices (default: all of them); resolves once their agents started. */
  bringOnline(ids?: readonly string[]): Promise<void>;
  /** Stops every agent; resolves when all have stopped. */
  stop(): Promise<void>;
}

/**
 * N simulated Pis in this process, each with its own small file-backed slots, state directory,
 * device identity and in-process boot firmware, sharing one module load of the agent and the SDKs.
 * Devices with the `offline` role stay off until bringOnline().
 */
export async function startFleet(options: FleetOptions): Promise<Fleet> {
  if (!Number.isInteger(options.count) || options.count < 1) throw new Error(`the device count must be a whole number of at least 1, got ${options.count}`);
  if (!/^[A-Za-z0-9\-.%_*?!(),:=@$']{1,100}$/.test(options.prefix)) throw new Error(`the device prefix '${options.prefix}' is not usable in a device id`);
  const dir = resolve(options.dir);
  const roles = pickRoles(
    options.count,
    { failTrial: options.failTrialRatio ?? 0, failDownload: options.failDownloadRatio ?? 0, offline: options.offlineRatio ?? 0 },
    options.seed ?? 1,
  );
  await mkdir(dir, { recursive: true });
  // One log for all agents (the daemon's own logger, with its secret masking), a `device` field each.
  const destination = pino.destination({ dest: join(dir, 'fleet.log'), sync: false, mkdir: true, append: true });
  const logger = createLogger({ level: options.logLevel ?? 'info', name: 'piota-fleet', destination: destination as unknown as NodeJS.WritableStream });
  const ids = roles.map((_, i) => `${options.prefix}-${i + 1}`);
  const devices: FleetDevice[] = [];
  const concurrency = options.startConcurrency ?? 16;
  await inBatches(ids, concurrency, async (id, i) => {
    devices[i] = await prepareDevice(options, dir, id, roles[i], logger.child({ device: id }));
  });
  if (options.tags) await tagFleet(options.hubDir, ids, options.tags);

  const byId = new Map(devices.map((d) => [d.id, d]));
  const describe = () => devices.map((d) => d.snapshot());
  const publish = () => writeFileDurably(join(dir, 'fleet.json'), JSON.stringify({ pid: process.pid, devices: describe() }, null, 2) + '\n').catch(() => undefined);
  const powerOn = async (list: readonly FleetDevice[]) => {
    await inBatches(list, concurrency, (d) => d.powerOn());
    await publish();
  };
  await powerOn(devices.filter((d) => d.role !== 'offline'));
  let stopping: Promise<void> | undefined;
  return {
    dir,
    devices: describe(),
    snapshot: describe,
    bringOnline: async (list) => {
      const chosen = (list ?? devices.filter((d) => !d.online).map((d) => d.id)).map((id) => {
        const d = byId.get(id);
        if (!d) throw new Error(`no device '${id}' in this fleet`);
        return d;
      });
      await powerOn(chosen);
    },
    stop: () =>
      (stopping ??= (async () => {
        await inBatches(devices, 32, (d) => d.stop());
        await publish();
        logger.flush();
      })()),
  };
}

async function prepareDevice(options: FleetOptions, dir: string, id: string, role: FleetDevice['role'], logger: Logger): Promise<FleetDevice> {
  const layout = simLayout(join(dir, id));
  const raw = await simulatedDaemonConfig({
    layout,
    hubDir: options.hubDir,
    deviceId: id,
    pubkey: options.pubkey,
    downloadCa: options.downloadCa,
    version: options.version ?? '1.0.0',
    model: options.model ?? 'raspberrypi4-64',
    overrides: { logLevel: options.logLevel ?? 'info', ...options.daemonConfig },
  });
  let config;
  try {
    config = validateConfig(raw);
  } catch (err) {
    if (err instanceof ConfigError) throw new Error(`the fleet's agent config: ${err.message}`);
    throw err;
  }
  await createLayout(layout, options.slotSize ?? 64 * 1024);
  await mkdir(layout.runtimeDir, { recursive: true });
  await registerFleetDevice(options.hubDir, id, config.stateDir);
  return new FleetDevice({ id, dir: layout.dir, role, config, logger, agentVersion: options.agentVersion ?? '0.0.0-fleet', watchdogMs: options.watchdogMs ?? 2000 });
}

/** Runs `work` over `items`, at most `limit` at a time. */
async function inBatches<T>(items: readonly T[], limit: number, work: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      await work(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
