import { readFile } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { SLOTS, type Slot } from '../boot/backend.js';
import { BOOT_PARTITION_MAX, BOOT_PARTITION_MIN } from '../boot/autoboot.js';
import { MAX_CHUNK_SIZE, MIN_CHUNK_SIZE } from '../bundle/format.js';
import { MaintenanceSchedule, WindowScheduleError } from './maintenance-window.js';
import { TIMESYNC_FLAG } from './clock.js';


/** A partition name of a slot ('boot', 'rootfs') mapped to its device or file. */
export type SlotPartitions = Record<string, string>;

export interface TrybootConfig {
  backend: 'tryboot';
  autobootFile: string;
  bootPartitions: Record<Slot, number>;
  deviceTreeDir: string;
  rebootCommand: string[];
  trybootCommand: string[];
}

/** How the daemon reaches IoT Hub. */
export interface HubSettings {
  /** `mqtt`: MQTT over TLS on port 8883. `mqtt-ws`: MQTT over WebSockets on port 443, through a proxy if one is set. */
  transport: 'mqtt' | 'mqtt-ws';
  /** An http:// proxy URL for `mqtt-ws`; null for none; undefined: HTTPS_PROXY / NO_PROXY from the environment. */
  proxy: string | null | undefined;
}

/** How bundles are downloaded (docs/download.md). */
export interface DownloadSettings {
  /** An http:// proxy URL; null for none; undefined: HTTPS_PROXY / NO_PROXY from the environment. */
  proxy: string | null | undefined;
  idleTimeoutSeconds: number;
  /** A whole attempt may take at most this long; null: no limit. */
  deadlineSeconds: number | null;
  /** An attempt slower than this over a minute is abandoned (and retried); null: no limit. */
  minBytesPerSecond: number | null;
  retry: { attempts: number; firstDelaySeconds: number; maxDelaySeconds: number };
  /** Format 2 bundles may be installed adaptively (docs/adaptive-updates.md); false: always the full download. */
  adaptive: boolean;
}

/** The index of the running slot that adaptive downloads reuse blocks from (docs/adaptive-updates.md). */
export interface SlotIndexSettings {
  /** Pace of its build in idle time, bytes/s; 0: never built in idle time (only during a download that finds none). */
  bytesPerSecond: number;
}

export interface ClockSettings {
  /** The longest the daemon waits for a plausible clock before it connects anyway. */
  maxWaitSeconds: number;
  /** The file whose presence says the system clock is synchronised. */
  syncFlagFile: string;
}

export interface MaintenanceWindow {
  cron: string;
  durationMinutes: number;
  timeZone?: string;
}

/** The fleet-wide daemon configuration (`/etc/piota/config.json`); see docs/configuration.md. */
export interface DaemonConfig {
  model: string;
  stateDir: string;
  runtimeDir: string;
  initialVersion: string;
  versionFile: string | null;
  trustedKeys: string[];
  allowPlainImages: boolean;
  hubCaFile: string | null;
  downloadCaFile: string | null;
  slots: Record<Slot, SlotPartitions>;
  boot: TrybootConfig;
  trialTimeoutSeconds: number;
  /** How long a requested reboot may take before it counts as failed. */
  rebootTimeoutSeconds: number;
  progressIntervalSeconds: number;
  maintenanceWindow: MaintenanceWindow | null;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
  /** The anti-rollback floor the image seeds: bundles with a lower security version are refused. */
  minSecurityVersion: number;
  /** The largest bundle chunk this device accepts (a chunk is held in memory while its hash is checked). */
  maxChunkBytes: number;
  hub: HubSettings;
  download: DownloadSettings;
  clock: ClockSettings;
  slotIndex: SlotIndexSettings;
}

/** A config file that cannot be used: the message names the file and the field. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

const DEFAULTS = {
  stateDir: '/data/piota',
  runtimeDir: '/run/piota',
  initialVersion: '0.0.0',
  versionFile: null,
  allowPlainImages: false,
  hubCaFile: null,
  downloadCaFile: null,
  trialTimeoutSeconds: 300,
  rebootTimeoutSeconds: 120,
  progressIntervalSeconds: 5,
  maintenanceWindow: null,
  logLevel: 'info',
  minSecurityVersion: 0,
  maxChunkBytes: 16 * 1024 * 1024,
  hub: {},
  download: {},
  clock: {},
  slotIndex: {},
} as const;

/** The tryboot reboot as systemd 253 and later take it (and systemd 252, Raspberry Pi OS bookworm's). */
export const DEFAULT_TRYBOOT_COMMAND = ['systemctl', 'reboot', '--reboot-argument=0 tryboot'];

const KNOWN_FIELDS = new Set([
  'model', 'stateDir', 'runtimeDir', 'initialVersion', 'versionFile', 'trustedKeys', 'allowPlainImages',
  'hubCaFile', 'downloadCaFile', 'slots', 'boot', 'trialTimeoutSeconds', 'rebootTimeoutSeconds', 'progressIntervalSeconds',
  'maintenanceWindow', 'logLevel', 'minSecurityVersion', 'maxChunkBytes', 'hub', 'download', 'clock',
  'slotIndex',
]);
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'];

/** Reads and validates a config file. Throws ConfigError with one line naming the problem. */
export async function loadConfig(path: string): Promise<DaemonConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`config ${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config ${path}: not valid JSON (${(err as Error).message})`);
  }
  try {
    return validateConfig(raw);
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(`config ${path}: ${err.message}`);
    throw err;
  }
}

/** Validates a parsed config object; fills defaults. */
export function validateConfig(raw: unknown): DaemonConfig {
  const o = object(raw, 'the config');
  for (const key of Object.keys(o)) {
    if (!KNOWN_FIELDS.has(key)) throw new ConfigError(`unknown field '${key}'`);
  }
  const c = { ...DEFAULTS, ...o } as Record<string, unknown>;
  const config: DaemonConfig = {
    model: nonEmptyString(c.model, 'model'),
    stateDir: absolutePath(c.stateDir, 'stateDir'),
    runtimeDir: absolutePath(c.runtimeDir, 'runtimeDir'),
    initialVersion: nonEmptyString(c.initialVersion, 'initialVersion'),
    versionFile: c.versionFile === null ? null : absolutePath(c.versionFile, 'versionFile'),
    trustedKeys: trustedKeys(c.trustedKeys),
    allowPlainImages: boolean(c.allowPlainImages, 'allowPlainImages'),
    hubCaFile: c.hubCaFile === null ? null : absolutePath(c.hubCaFile, 'hubCaFile'),
    downloadCaFile: c.downloadCaFile === null ? null : absolutePath(c.downloadCaFile, 'downloadCaFile'),
    slots: slots(c.slots),
    boot: boot(c.boot),
    trialTimeoutSeconds: integer(c.trialTimeoutSeconds, 'trialTimeoutSeconds', 1, 86_400),
    rebootTimeoutSeconds: seconds(c.rebootTimeoutSeconds, 'rebootTimeoutSeconds', 0.1, 3600),
    progressIntervalSeconds: integer(c.progressIntervalSeconds, 'progressIntervalSeconds', 0, 3600),
    maintenanceWindow: c.maintenanceWindow === null ? null : maintenanceWindow(c.maintenanceWindow),
    logLevel: oneOf(c.logLevel, 'logLevel', LOG_LEVELS) as DaemonConfig['logLevel'],
    minSecurityVersion: integer(c.minSecurityVersion, 'minSecurityVersion', 0, 2 ** 32 - 1),
    maxChunkBytes: integer(c.maxChunkBytes, 'maxChunkBytes', MIN_CHUNK_SIZE, MAX_CHUNK_SIZE),
    hub: hub(c.hub),
    download: download(c.download),
    clock: clock(c.clock),
    slotIndex: slotIndex(c.slotIndex),
  };
  checkStateDirOutsideSlots(config);
  return config;
}

function checkStateDirOutsideSlots(config: DaemonConfig): void {
  for (const slot of SLOTS) {
    for (const [part, path] of Object.entries(config.slots[slot])) {
      if (config.stateDir === path || config.stateDir.startsWith(path + '/')) {
        throw new ConfigError(`stateDir ${config.stateDir} lies inside slot ${slot} ${part} (${path}); it must be on a partition both slots share`);
      }
    }
  }
}

function slots(v: unknown): Record<Slot, SlotPartitions> {
  const o = object(v, 'slots');
  const result = {} as Record<Slot, SlotPartitions>;
  for (const key of Object.keys(o)) {
    if (key !== 'A' && key !== 'B') throw new ConfigError(`slots: unknown slot '${key}' (expected A and B)`);
  }
  const seen = new Map<string, string>();
  for (const slot of SLOTS) {
    const parts = object(o[slot], `slots.${slot}`);
    if (Object.keys(parts).length === 0) throw new ConfigError(`slots.${slot}: names no partition (e.g. {"rootfs": "/dev/mmcblk0p5"})`);
    result[slot] = {};
    for (const [name, path] of Object.entries(parts)) {
      if (!/^[a-z][a-z0-9_-]{0,31}$/.test(name)) throw new ConfigError(`slots.${slot}: partition name '${name}' must be lower-case letters, digits, - or _`);
      const p = absolutePath(path, `slots.${slot}.${name}`);
      const other = seen.get(p);
      if (other) throw new ConfigError(`slots.${slot}.${name}: ${p} is also ${other}`);
      seen.set(p, `slots.${slot}.${name}`);
      result[slot][name] = p;
    }
  }
  const a = Object.keys(result.A).sort().join(',');
  const b = Object.keys(result.B).sort().join(',');
  if (a !== b) throw new ConfigError(`slots: A has partitions [${a}] but B has [${b}]; both slots need the same partitions`);
  return result;
}

function boot(v: unknown): TrybootConfig {
  const o = object(v, 'boot');
  const backend = oneOf(o.backend, 'boot.backend', ['tryboot']) as 'tryboot';
  const parts = object(o.bootPartitions, 'boot.bootPartitions');
  const bootPartitions = {
    A: integer(parts.A, 'boot.bootPartitions.A', BOOT_PARTITION_MIN, BOOT_PARTITION_MAX),
    B: integer(parts.B, 'boot.bootPartitions.B', BOOT_PARTITION_MIN, BOOT_PARTITION_MAX),
  };
  if (bootPartitions.A === bootPartitions.B) throw new ConfigError('boot.bootPartitions: A and B must differ');
  return {
    backend,
    autobootFile: absolutePath(o.autobootFile, 'boot.autobootFile'),
    bootPartitions,
    deviceTreeDir: absolutePath(o.deviceTreeDir ?? '/sys/firmware/devicetree/base/chosen/bootloader', 'boot.deviceTreeDir'),
    rebootCommand: command(o.rebootCommand ?? ['systemctl', 'reboot'], 'boot.rebootCommand'),
    trybootCommand: command(o.trybootCommand ?? DEFAULT_TRYBOOT_COMMAND, 'boot.trybootCommand'),
  };
}

function hub(v: unknown): HubSettings {
  const o = section(v, 'hub', ['transport', 'proxy']);
  return {
    transport: oneOf(o.transport ?? 'mqtt', 'hub.transport', ['mqtt', 'mqtt-ws']) as HubSettings['transport'],
    proxy: proxyUrl(o.proxy, 'hub.proxy'),
  };
}

function download(v: unknown): DownloadSettings {
  const o = section(v, 'download', ['proxy', 'idleTimeoutSeconds', 'deadlineSeconds', 'minBytesPerSecond', 'retry', 'adaptive']);
  const r = section(o.retry, 'download.retry', ['attempts', 'firstDelaySeconds', 'maxDelaySeconds']);
  const firstDelaySeconds = seconds(r.firstDelaySeconds ?? 2, 'download.retry.firstDelaySeconds', 0, 3600);
  const maxDelaySeconds = seconds(r.maxDelaySeconds ?? 60, 'download.retry.maxDelaySeconds', 0, 86_400);
  if (maxDelaySeconds < firstDelaySeconds) throw new ConfigError('download.retry.maxDelaySeconds: must not be less than firstDelaySeconds');
  return {
    proxy: proxyUrl(o.proxy, 'download.proxy'),
    idleTimeoutSeconds: seconds(o.idleTimeoutSeconds ?? 30, 'download.idleTimeoutSeconds', 0.1, 3600),
    deadlineSeconds: o.deadlineSeconds === undefined || o.deadlineSeconds === null ? null : seconds(o.deadlineSeconds, 'download.deadlineSeconds', 1, 7 * 86_400),
    minBytesPerSecond: o.minBytesPerSecond === undefined || o.minBytesPerSecond === null ? null : integer(o.minBytesPerSecond, 'download.minBytesPerSecond', 1, 2 ** 40),
    retry: { attempts: integer(r.attempts ?? 8, 'download.retry.attempts', 1, 1000), firstDelaySeconds, maxDelaySeconds },
    adaptive: o.adaptive === undefined ? true : boolean(o.adaptive, 'download.adaptive'),
  };
}

function clock(v: unknown): ClockSettings {
  const o = section(v, 'clock', ['maxWaitSeconds', 'syncFlagFile']);
  return {
    maxWaitSeconds: seconds(o.maxWaitSeconds ?? 300, 'clock.maxWaitSeconds', 0, 86_400),
    syncFlagFile: absolutePath(o.syncFlagFile ?? TIMESYNC_FLAG, 'clock.syncFlagFile'),
  };
}

function slotIndex(v: unknown): SlotIndexSettings {
  const o = section(v, 'slotIndex', ['bytesPerSecond']);
  const pace = o.bytesPerSecond === undefined ? 16 * 1024 * 1024 : o.bytesPerSecond;
  // Below 64 KiB/s a 4 GiB slot would take most of a day; 0 turns the idle build off instead.
  if (pace !== 0) integer(pace, 'slotIndex.bytesPerSecond (0, or bytes per second)', 65_536, 2 ** 34);
  return { bytesPerSecond: pace as number };
}

/** An optional object section with known fields only; absent means all defaults. */
function section(v: unknown, field: string, known: string[]): Record<string, unknown> {
  if (v === undefined) return {};
  const o = object(v, field);
  for (const key of Object.keys(o)) {
    if (!known.includes(key)) throw new ConfigError(`${field}: unknown field '${key}' (expected ${known.join(', ')})`);
  }
  return o;
}

function proxyUrl(v: unknown, field: string): string | null | undefined {
  if (v === undefined || v === null) return v;
  const s = nonEmptyString(v, field);
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    throw new ConfigError(`${field}: '${s}' is not a URL (expected http://host:port)`);
  }
  if (url.protocol !== 'http:') throw new ConfigError(`${field}: expected an http:// proxy URL, got ${url.protocol}`);
  return s;
}

function seconds(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
    throw new ConfigError(`${field}: expected a number of seconds from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function maintenanceWindow(v: unknown): MaintenanceWindow {
  const o = object(v, 'maintenanceWindow');
  const w: MaintenanceWindow = {
    cron: nonEmptyString(o.cron, 'maintenanceWindow.cron'),
    durationMinutes: integer(o.durationMinutes, 'maintenanceWindow.durationMinutes', 1, 7 * 24 * 60),
  };
  for (const key of Object.keys(o)) {
    if (!['cron', 'durationMinutes', 'timeZone'].includes(key)) throw new ConfigError(`maintenanceWindow: unknown field '${key}' (expected cron, durationMinutes, timeZone)`);
  }
  if (o.timeZone !== undefined && o.timeZone !== null) w.timeZone = nonEmptyString(o.timeZone, 'maintenanceWindow.timeZone');
  // The expression and the zone are checked now, so a typo stops the daemon at start, not at the first update.
  let schedule: MaintenanceSchedule;
  try {
    schedule = new MaintenanceSchedule(w);
  } catch (err) {
    if (err instanceof WindowScheduleError) throw new ConfigError(err.message);
    throw err;
  }
  try {
    if (schedule.nextOpening(Date.now()) === null) throw new ConfigError(`maintenanceWindow.cron: '${w.cron}' never matches in the next four years`);
  } finally {
    schedule.dispose();
  }
  return w;
}

function trustedKeys(v: unknown): string[] {
  if (!Array.isArray(v) || v.length === 0) throw new ConfigError('trustedKeys: expected a non-empty list of public key files (PEM)');
  return v.map((p, i) => absolutePath(p, `trustedKeys[${i}]`));
}

function command(v: unknown, field: string): string[] {
  if (!Array.isArray(v) || v.length === 0 || !v.every((s) => typeof s === 'string' && s !== '')) {
    throw new ConfigError(`${field}: expected a command as a non-empty list of strings, e.g. ["systemctl", "reboot"]`);
  }
  return v as string[];
}

function object(v: unknown, field: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ConfigError(`${field}: expected an object`);
  return v as Record<string, unknown>;
}

function nonEmptyString(v: unknown, field: string): string {
  if (typeof v !== 'string' || v.trim() === '') throw new ConfigError(`${field}: expected a non-empty string`);
  return v;
}

function absolutePath(v: unknown, field: string): string {
  const s = nonEmptyString(v, field);
  if (!isAbsolute(s)) throw new ConfigError(`${field}: expected an absolute path, got '${s}'`);
  return s.length > 1 ? s.replace(/\/+$/, '') : s;
}

function boolean(v: unknown, field: string): boolean {
  if (typeof v !== 'boolean') throw new ConfigError(`${field}: expected true or false`);
  return v;
}

function integer(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new ConfigError(`${field}: expected a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function oneOf(v: unknown, field: string, allowed: string[]): string {
  if (typeof v !== 'string' || !allowed.includes(v)) throw new ConfigError(`${field}: expected one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
  return v;
}
