import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { TrybootBackend } from '../boot/tryboot.js';
import { openDownload } from '../download/https-source.js';
import { hashPartition, openPartitionForWrite, partitionSize } from '../slots/index.js';
import { notifyReady, notifyStatus, notifyStopping, startWatchdogPings } from '../os/systemd-notify.js';
import { systemShuttingDown } from '../os/system-shutdown.js';
import { applyWindowGate } from './apply-window.js';
import { ClockFloor } from './clock-floor.js';
import { systemClock, type Clock } from './clock.js';
import type { DaemonConfig } from './config.js';
import { ConnectionStringError, parseDeviceConnectionString } from './connection-string.js';
import { DesiredFirmwareTrigger, desiredFirmwareReport } from './desired-firmware.js';
import type { HubClientFactory } from './hub-client.js';
import { HubLink } from './hub-link.js';
import { Inventory } from './inventory.js';
import { methodHandlers } from './method-handlers.js';
import type { BootBackend, SlotStorage } from './ports.js';
import { reportedProperties } from './reported-properties.js';
import { ReportedSync } from './reported-sync.js';
import { SecurityFloor } from './security-floor.js';
import { SlotIndexUpkeep } from './slot-index-upkeep.js';
import { holdDaemonLock } from './single-instance.js';
import { StateStore } from './state-store.js';
import { isTerminal, type DeviceState } from './device-state.js';
import type { HttpSource } from './workflow/context.js';
import { UpdateDoor } from './update-door.js';
import { UpdateRunner } from './workflow/runner.js';

/** Where the device's own connection string lives: the state directory, never /etc (an update replaces it). */
export function connectionStringPath(stateDir: string): string {
  return join(stateDir, 'connection-string');
}

/** The daemon could not start; the message says why and what to do. */
export class DaemonStartError extends Error {
  override name = 'DaemonStartError';
}

/** Why a daemon stopped: asked to (`stop()`), or it lost its single-instance lock (another daemon may run). */
export interface DaemonExit {
  reason: 'stopped' | 'lockLost';
  message?: string;
}

export interface RunningDaemon {
  /** Resolves when the daemon has stopped. */
  stopped: Promise<DaemonExit>;
  stop(): Promise<void>;
}

/** The machine, as the daemon meets it; tests replace parts (a fake clock, a boot firmware stub). */
export interface DaemonEnvironment {
  clock?: Clock;
  boot?: BootBackend;
  storage?: SlotStorage;
  http?: HttpSource;
  /** Builds the device client of each connection attempt (default: the device SDK). */
  clientFactory?: HubClientFactory;
  /**
   * Talk to systemd (readiness, status, watchdog); default true. An in-process fleet of simulated
   * devices turns it off: its process is not any one device's service.
   */
  systemd?: boolean;
}

const slotStorage: SlotStorage = {
  partitionSize,
  openForWrite: (path) => openPartitionForWrite(path),
  hashFromMedium: hashPartition,
};

/**
 * The composition root: reads config, state and keys, builds each part in dependency order (hub link,
 * reported-properties sync, workflow runner, method handlers) and starts them. Readiness goes to systemd
 * after local start-up (config read, lock held, state recovered), never after the hub connects, so an
 * offline boot does not loop in restarts.
 */
export async function startDaemon(config: DaemonConfig, logger: Logger, agentVersion: string, env: DaemonEnvironment = {}): Promise<RunningDaemon> {
  // No process.exit here: one process may run many daemons (the simulated fleet). Losing the lock
  // stops this daemon, and its caller (the `piota daemon` command) decides about the process.
  let lockLost: ((err: Error) => void) | undefined;
  const releaseLock = await holdDaemonLock(config.runtimeDir, (err) => {
    logger.fatal({ err: err.message }, 'lost the daemon lock; stopping');
    lockLost?.(err);
  });
  try {
    const daemon = await startHoldingLock(config, logger, agentVersion, releaseLock, env);
    lockLost = (err) => void daemon.stopWith({ reason: 'lockLost', message: err.message });
    return { stopped: daemon.stopped, stop: daemon.stop };
  } catch (err) {
    await releaseLock().catch(() => undefined);
    throw err;
  }
}

async function startHoldingLock(
  config: DaemonConfig,
  logger: Logger,
  agentVersion: string,
  releaseLock: () => Promise<void>,
  env: DaemonEnvironment,
): Promise<RunningDaemon & { stopWith(exit: DaemonExit): Promise<void> }> {
  const systemd = env.systemd ?? true;
  const clock = env.clock ?? systemClock(config.clock.syncFlagFile);
  const connectionString = await readConnectionString(config.stateDir);
  const trustedKeys = await Promise.all(config.trustedKeys.map((p) => readTrustedKey(p)));
  const hubCa = config.hubCaFile ? await readFile(config.hubCaFile, 'utf8') : undefined;
  const downloadCa = config.downloadCaFile ? await readFile(config.downloadCaFile, 'utf8') : undefined;

  // The state: never a reason not to start. A damaged file is moved aside and the recovery reported.
  const { state, recovery } = await new StateStore(config.stateDir).load(new Date(clock.now()));
  if (recovery) logger.error({ ...recovery }, 'the state file was damaged; recovered');
  const clockFloor = new ClockFloor(state.newestTimestamp, clock);
  const store = new StateStore(config.stateDir, () => clockFloor.current(), agentVersion);

  const boot = env.boot ?? new TrybootBackend(config.boot, (msg, fields) => logger.warn(fields, msg));
  const inventory = await Inventory.read(boot, config, state);
  const securityFloor = await SecurityFloor.load(
    config.stateDir,
    // Only the committed slot's record seeds it: a slot whose trial failed must not raise it.
    [config.minSecurityVersion, state.slots[inventory.committedSlot]?.securityVersion ?? 0],
    (message) => logger.error({ err: message }, 'the anti-rollback floor file is damaged; using the config seed and the slot records'),
  );
  const windowGate = applyWindowGate(config, logger);
  logger.info(
    { bootedSlot: inventory.bootedSlot, committedSlot: inventory.committedSlot, trial: inventory.trialBoot, version: inventory.runningVersion, update: state.update?.phase ?? null, securityFloor: securityFloor.current },
    'piota daemon starting',
  );

  const link = new HubLink({
    connectionString,
    ca: hubCa,
    transport: config.hub.transport,
    proxy: config.hub.proxy,
    clientFactory: env.clientFactory,
    logger,
    waitForPlausibleClock: async (signal) => {
      const decision = await clockFloor.waitForPlausible({
        maxWaitMs: config.clock.maxWaitSeconds * 1000,
        signal,
        onWait: (floor, observed) =>
          logger.warn({ floor, observed, maxWaitSeconds: config.clock.maxWaitSeconds }, 'the clock is behind the newest time this device has evidence for; waiting for time sync before connecting'),
      });
      const level = decision.decision === 'plausible' ? 'debug' : 'warn';
      logger[level]({ ...decision }, `clock decision: ${decision.decision}`);
    },
  });

  const sync = new ReportedSync(
    link,
    () =>
      withDesiredReport(reportedProperties(state, {
        agentVersion,
        model: config.model,
        bootedSlot: inventory.bootedSlot,
        committedSlot: inventory.committedSlot,
        runningVersion: inventory.runningVersion,
        applyAt: state.update ? windowGate.applyAt(state.update) : null,
        securityFloor: securityFloor.current,
        clock: clockFloor.decision,
      }), state),
    { progressIntervalMs: config.progressIntervalSeconds * 1000, logger },
  );

  // The first twin read in this process: the hub is reached (what a trial waits for).
  const hubReached = once(link, 'twinRead').then(() => undefined);
  const save = () => store.save(state);
  // Set once the trigger exists (it needs the runner, which needs statusChanged).
  let updateMayHaveEnded = () => undefined as unknown;
  const statusChanged = () => {
    sync.statusChanged();
    const u = state.update;
    if (!u || isTerminal(u.phase)) updateMayHaveEnded();
    // `systemctl status piota` shows where the update is.
    if (systemd) void notifyStatus(u ? `update ${u.updateId}: ${u.phase}${u.error ? ` (${u.error.code})` : ''}` : 'idle').catch(() => undefined);
  };
  const storage = env.storage ?? slotStorage;
  // In idle time (no update under way, the booted slot committed), the running slot's index, so the
  // next update can be adaptive (docs/adaptive-updates.md).
  const slotIndexes = new SlotIndexUpkeep({
    stateDir: config.stateDir,
    slot: inventory.bootedSlot,
    partitions: config.slots[inventory.bootedSlot],
    installedAt: () => state.slots[inventory.bootedSlot]?.installedAt ?? null,
    bytesPerSecond: config.slotIndex.bytesPerSecond,
    partitionSize: (path) => storage.partitionSize(path),
    logger,
  });
  const indexWhenIdle = () => {
    const idle = !state.update || isTerminal(state.update.phase);
    if (idle && inventory.committedSlot === inventory.bootedSlot && config.download.adaptive && config.slotIndex.bytesPerSecond > 0) slotIndexes.start();
  };
  const runner = new UpdateRunner({
    state,
    saveState: (next) => store.save(next),
    statusChanged,
    refreshInventory: () => inventory.refresh(),
    logger,
    settings: { config, trustedKeys, downloadCa },
    ports: {
      boot,
      storage,
      http: env.http ?? openDownload,
      clock,
      logger,
      securityFloor,
      progressChanged: () => sync.progressChanged(),
      flushReports: (ms) => sync.flush(ms),
      hubReached,
      applyWindowOpen: (update, signal) => windowGate.waitUntilOpen(update, signal),
      // Asked of systemd only when it runs this daemon as a service (a simulated Pi on a developer's
      // machine must not read the host's own shutdown as its reboot).
      shutdownUnderWay: systemd && process.env.NOTIFY_SOCKET ? () => systemShuttingDown() : async () => false,
    },
  });

  // One door for the method and the desired release: they never both start an update.
  const door = new UpdateDoor({
    state,
    bootedSlot: inventory.bootedSlot,
    save: (next) => store.save(next),
    statusChanged,
    flushReports: (ms) => sync.flush(ms),
    runner,
    logger,
  });
  link.handleMethods(methodHandlers({ ...door.deps, door }));
  const desired = new DesiredFirmwareTrigger({ state, door, runningVersion: () => inventory.runningVersion, statusChanged, logger });
  updateMayHaveEnded = () => {
    void desired.updateEnded();
    indexWhenIdle();
  };
  link.on('twinRead', () => sync.linkUp());
  link.on('desired', (document) => void desired.desiredChanged(document));

  // A recovered or newer-agent state is written back at once, in this agent's schema.
  if (recovery || state.update) await save().catch((err: Error) => logger.error({ err: err.message }, 'could not write the state file'));
  if (systemd) await notifyReady().catch((err: Error) => logger.warn({ err: err.message }, 'could not notify systemd'));
  const stopWatchdog = systemd ? startWatchdogPings() : () => undefined;
  link.start();
  runner.start(true);
  indexWhenIdle();

  let resolveStopped!: (exit: DaemonExit) => void;
  const stopped = new Promise<DaemonExit>((r) => (resolveStopped = r));
  let stopping: Promise<void> | null = null;
  const stopWith = (exit: DaemonExit) => {
    // Each step is bounded: systemd's reboot waits for this process, and SIGTERM must end it within 2 s.
    stopping ??= (async () => {
      logger.info('piota daemon stopping');
      if (systemd) await notifyStopping().catch(() => undefined);
      stopWatchdog();
      desired.stop();
      sync.stop();
      windowGate.stop();
      await Promise.all([runner.stop(), link.stop(), slotIndexes.stop()]);
      await releaseLock().catch(() => undefined);
      resolveStopped(exit);
    })();
    return stopping;
  };
  return { stopped, stop: () => stopWith({ reason: 'stopped' }), stopWith };
}

/** The reported picture with the desired-release decision as `piota.firmware` (docs/status.md). */
function withDesiredReport(reported: Record<string, unknown>, state: DeviceState): Record<string, unknown> {
  const piota = (reported.piota ?? {}) as Record<string, unknown>;
  return { ...reported, piota: { ...piota, firmware: desiredFirmwareReport(state) } };
}

async function readConnectionString(stateDir: string): Promise<string> {
  const path = connectionStringPath(stateDir);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new DaemonStartError(
      code === 'ENOENT'
        ? `no device connection string at ${path}: store it there (mode 0600), e.g. with scripts/install.sh --connection-string`
        : `cannot read the device connection string ${path} (${code})`,
    );
  }
  try {
    return parseDeviceConnectionString(text).connectionString;
  } catch (err) {
    if (err instanceof ConnectionStringError) throw new DaemonStartError(`${path}: ${err.message}`);
    throw err;
  }
}

async function readTrustedKey(path: string): Promise<string> {
  try {
    const pem = await readFile(path, 'utf8');
    if (!pem.includes('-----BEGIN PUBLIC KEY-----')) throw new DaemonStartError(`trusted key ${path} is not a PEM public key (expected -----BEGIN PUBLIC KEY-----)`);
    return pem;
  } catch (err) {
    if (err instanceof DaemonStartError) throw err;
    throw new DaemonStartError(`cannot read trusted key ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}
