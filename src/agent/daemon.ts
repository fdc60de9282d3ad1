import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { TrybootBackend } from '../boot/tryboot.js';
import { hashPartition, openPartitionForWrite, partitionSize } from '../slots/index.js';
import { notifyReady, notifyStopping, startWatchdogPings } from '../os/systemd-notify.js';
import { waitForPlausibleClock } from './clock.js';
import type { DaemonConfig } from './config.js';
import { StateStore, type DeviceState } from './device-state.js';
import { HubLink } from './hub-link.js';
import { runningSecurityVersion, runningVersion } from './inventory.js';
import { methodHandlers } from './method-handlers.js';
import { applyWindowGate } from './apply-window.js';
import type { SlotStorage } from './ports.js';
import { reportedProperties } from './reported-properties.js';
import { ReportedSync } from './reported-sync.js';
import { holdDaemonLock } from './single-instance.js';
import { UpdateRunner } from './update-runner.js';

/** Where the device's own connection string lives: the state directory, never /etc (an update replaces it). */
export function connectionStringPath(stateDir: string): string {
  return join(stateDir, 'connection-string');
}

/** The daemon could not start; the message says why and what to do. */
export class DaemonStartError extends Error {
  override name = 'DaemonStartError';
}

export interface RunningDaemon {
  /** Resolves when the daemon has stopped. */
  stopped: Promise<void>;
  stop(): Promise<void>;
}

const slotStorage: SlotStorage = {
  partitionSize,
  openForWrite: (path) => openPartitionForWrite(path),
  hashFromMedium: hashPartition,
};

/**
 * The composition root: wires config, state, boot backend, slots, hub link and workflow together.
 * Readiness goes to systemd after local start-up (config read, lock held, state recovered), never
 * after the hub connects, so an offline boot does not loop in restarts.
 */
export async function startDaemon(config: DaemonConfig, logger: Logger, agentVersion: string): Promise<RunningDaemon> {
  const releaseLock = await holdDaemonLock(config.runtimeDir, (err) => {
    logger.fatal({ err: err.message }, 'lost the daemon lock; exiting');
    process.exit(1);
  });
  try {
    return await startHoldingLock(config, logger, agentVersion, releaseLock);
  } catch (err) {
    await releaseLock().catch(() => undefined);
    throw err;
  }
}

async function startHoldingLock(config: DaemonConfig, logger: Logger, agentVersion: string, releaseLock: () => Promise<void>): Promise<RunningDaemon> {
  const store = new StateStore(config.stateDir);
  const state: DeviceState = await store.load();
  const connectionString = await readConnectionString(config.stateDir);
  const trustedKeys = await Promise.all(config.trustedKeys.map((p) => readTrustedKey(p)));
  const hubCa = config.hubCaFile ? await readFile(config.hubCaFile, 'utf8') : undefined;
  const downloadCa = config.downloadCaFile ? await readFile(config.downloadCaFile, 'utf8') : undefined;

  const boot = new TrybootBackend(config.boot);
  const bootedSlot = await boot.bootedSlot();
  let committedSlot = await boot.committedSlot();
  const trial = await boot.isTrialBoot();
  let version = await runningVersion(config, state, bootedSlot);
  const windowGate = applyWindowGate(config, logger);
  logger.info({ bootedSlot, committedSlot, trial, version, update: state.update?.phase ?? null }, 'piota daemon starting');

  let hubReachedResolve!: () => void;
  const hubReached = new Promise<void>((r) => (hubReachedResolve = r));

  // The link is made below (its method handlers need the runner, which needs this sync).
  const hub: { link?: HubLink } = {};
  const sync = new ReportedSync(
    { get connected() { return hub.link?.connected ?? false; }, updateReported: (p, t) => hub.link!.updateReported(p, t) },
    () =>
      reportedProperties(state, {
        agentVersion,
        model: config.model,
        bootedSlot,
        committedSlot,
        runningVersion: version,
        applyAt: state.update ? windowGate.applyAt(state.update) : null,
      }),
    { progressIntervalMs: config.progressIntervalSeconds * 1000, logger },
  );
  const save = () => store.save(state);
  const statusChanged = () => {
    void refreshInventory().then(() => sync.statusChanged());
  };
  // After a commit the committed slot and the running version's record change.
  const refreshInventory = async () => {
    committedSlot = await boot.committedSlot().catch(() => committedSlot);
    version = await runningVersion(config, state, bootedSlot);
  };

  const runner = new UpdateRunner({
    state,
    save,
    statusChanged,
    logger,
    context: {
      config,
      boot,
      storage: slotStorage,
      trust: { trustedKeys, model: config.model, securityVersion: runningSecurityVersion(state, bootedSlot) },
      downloadCa,
      logger,
      save,
      reportProgress: () => sync.progressChanged(),
      flushReports: (ms) => sync.flush(ms),
      hubReached,
      applyWindowOpen: (update, signal) => windowGate.waitUntilOpen(update, signal),
      rebootTimeoutMs: 120_000,
      downloadRetries: { attempts: 8, firstDelayMs: 2000, maxDelayMs: 60_000 },
    },
  });

  const link = new HubLink({
    connectionString,
    ca: hubCa,
    logger,
    methods: methodHandlers({ state, bootedSlot, save, statusChanged, flushReports: (ms) => sync.flush(ms), runner, logger }),
    onTwinRead: () => {
      hubReachedResolve();
      sync.linkUp();
    },
    waitForPlausibleClock: () => waitForPlausibleClock(state.newestTimestamp, logger),
  });

  hub.link = link;
  await notifyReady().catch((err: Error) => logger.warn({ err: err.message }, 'could not notify systemd'));
  const stopWatchdog = startWatchdogPings();
  link.start();
  runner.start(true);

  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => (resolveStopped = r));
  let stopping: Promise<void> | null = null;
  const stop = () => {
    stopping ??= (async () => {
      logger.info('piota daemon stopping');
      await notifyStopping().catch(() => undefined);
      stopWatchdog();
      await runner.stop();
      sync.stop();
      await link.stop();
      windowGate.stop();
      await releaseLock().catch(() => undefined);
      resolveStopped();
    })();
    return stopping;
  };
  return { stopped, stop };
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
  const cs = text.trim();
  const fields = new Map(cs.split(';').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  for (const need of ['HostName', 'DeviceId']) {
    if (!fields.get(need)) throw new DaemonStartError(`the device connection string in ${path} has no ${need}`);
  }
  if (!fields.get('SharedAccessKey') && !fields.get('SharedAccessSignature')) {
    throw new DaemonStartError(`the device connection string in ${path} has neither SharedAccessKey nor SharedAccessSignature`);
  }
  return cs;
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
