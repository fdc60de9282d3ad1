import type { Logger } from 'pino';
import type { DeviceTrust } from '../bundle/verifier.js';
import { DownloadError } from '../download/https-source.js';
import type { DaemonConfig } from './config.js';
import type { DeviceState, Phase, UpdateRecord } from './device-state.js';
import { downloadToSlot } from './download-to-slot.js';
import type { BootControl, SlotStorage } from './ports.js';
import { UpdateFailure } from './update-failure.js';
import type { PhaseOutcome } from './workflow.js';

/** Everything a phase's work may use. */
export interface PhaseContext {
  config: DaemonConfig;
  state: DeviceState;
  update: UpdateRecord;
  /** The phase was read from disk at start-up rather than entered by this process. */
  resumed: boolean;
  boot: BootControl;
  storage: SlotStorage;
  trust: DeviceTrust;
  downloadCa?: string;
  logger: Logger;
  signal: AbortSignal;
  save(): Promise<void>;
  reportProgress(): void;
  flushReports(timeoutMs: number): Promise<boolean>;
  /** Resolves once this process has read the twin: the hub is reached. */
  hubReached: Promise<void>;
  /** Resolves when the update may be applied (the maintenance window is open, or none is set). */
  applyWindowOpen(update: UpdateRecord, signal: AbortSignal): Promise<void>;
  /** How long a requested reboot may take before it counts as failed. */
  rebootTimeoutMs: number;
  /** Download retries on transient trouble (network, 5xx). */
  downloadRetries: { attempts: number; firstDelayMs: number; maxDelayMs: number };
}

type PhaseWork = (ctx: PhaseContext) => Promise<PhaseOutcome>;

/** One function per phase that has work; terminal phases have none. */
export const PHASE_WORK: Partial<Record<Phase, PhaseWork>> = {
  waiting,
  downloading,
  downloadComplete,
  verifying,
  rebooting,
  trial,
  committing,
  rollingBack,
};

/** Nothing holds an update before its download (the window only gates applying). */
async function waiting(): Promise<PhaseOutcome> {
  return { event: 'start' };
}

async function downloading(ctx: PhaseContext): Promise<PhaseOutcome> {
  const { attempts, firstDelayMs, maxDelayMs } = ctx.downloadRetries;
  // From the first byte on, the target slot no longer holds what its record says.
  if (ctx.state.slots[ctx.update.targetSlot] !== null) {
    ctx.state.slots[ctx.update.targetSlot] = null;
    await ctx.save();
  }
  for (let attempt = 1; ; attempt++) {
    try {
      await downloadToSlot(ctx.update, {
        storage: ctx.storage,
        trust: ctx.trust,
        targetPartitions: ctx.config.slots[ctx.update.targetSlot],
        downloadCa: ctx.downloadCa,
        logger: ctx.logger,
        checkpoint: () => ctx.save(),
        progress: () => ctx.reportProgress(),
        signal: ctx.signal,
      });
      return { event: 'downloaded' };
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      if (err instanceof DownloadError && err.transient && attempt < attempts) {
        const delay = Math.min(maxDelayMs, firstDelayMs * 2 ** (attempt - 1));
        ctx.logger.warn({ updateId: ctx.update.updateId, err: err.message, attempt, retryInMs: delay }, 'download interrupted; will resume');
        await sleep(delay, ctx.signal);
        continue;
      }
      if (err instanceof DownloadError) throw new UpdateFailure('downloadError', err.message);
      throw err;
    }
  }
}

async function downloadComplete(ctx: PhaseContext): Promise<PhaseOutcome> {
  await ctx.applyWindowOpen(ctx.update, ctx.signal);
  return { event: 'windowOpen' };
}

/** Reads back what was written, from the medium, and checks it against the signed manifest. */
async function verifying(ctx: PhaseContext): Promise<PhaseOutcome> {
  const bundle = ctx.update.bundle;
  if (!bundle) throw new UpdateFailure('internalError', 'no bundle was recorded for this update');
  for (const p of bundle.payloads) {
    const path = ctx.config.slots[ctx.update.targetSlot][p.name];
    const actual = await ctx.storage.hashFromMedium(path, p.imageSize);
    if (actual !== p.imageSha256) {
      throw new UpdateFailure('readbackMismatch', `${path} reads back with sha256 ${actual}, but the ${p.name} image has ${p.imageSha256}`);
    }
  }
  // The slot now holds this version (committed or not): its record says so, and the version reported
  // while the slot runs its trial is the new one.
  const main = bundle.payloads.find((p) => p.name === 'rootfs') ?? bundle.payloads[0];
  ctx.state.slots[ctx.update.targetSlot] = {
    version: bundle.version,
    sha256: main.imageSha256,
    securityVersion: bundle.securityVersion,
    installedAt: new Date().toISOString(),
  };
  return { event: 'verified' };
}

/**
 * Entered by this process: switch the boot to the new slot for one trial, reboot and wait. Found at start-up: the reboot
 * happened; which slot came up says how it went.
 */
async function rebooting(ctx: PhaseContext): Promise<PhaseOutcome> {
  const { targetSlot } = ctx.update;
  if (!ctx.resumed) {
    await ctx.flushReports(5000);
    await ctx.boot.startTrial(targetSlot);
    await sleep(ctx.rebootTimeoutMs, ctx.signal);
    throw new UpdateFailure('rebootFailed', `the trial reboot into slot ${targetSlot} was requested but did not happen within ${ctx.rebootTimeoutMs / 1000} s`);
  }
  return (await fellBack(ctx)) ?? { event: 'bootedTrial' };
}

/**
 * Found at start-up in a phase that runs on the new slot, but the board came up on the old one:
 * the trial hung, was reset, or lost power, and the firmware fell back.
 */
async function fellBack(ctx: PhaseContext): Promise<PhaseOutcome | undefined> {
  const { targetSlot, fromSlot } = ctx.update;
  if (!ctx.resumed || (await ctx.boot.bootedSlot()) === targetSlot) return undefined;
  return {
    event: 'fellBack',
    error: { code: 'trialFailed', message: `the trial boot of slot ${targetSlot} did not come up healthy; the board is back on slot ${fromSlot}` },
  };
}

/** Healthy = the daemon started in the new slot, recovered its state and reached the hub in time. */
async function trial(ctx: PhaseContext): Promise<PhaseOutcome> {
  const u = ctx.update;
  const fell = await fellBack(ctx);
  if (fell) return fell;
  if (u.trialStartedAt === null) {
    u.trialStartedAt = Date.now();
    await ctx.save();
  }
  const timeoutMs = ctx.config.trialTimeoutSeconds * 1000;
  const left = Math.max(0, u.trialStartedAt + timeoutMs - Date.now());
  const reached = await Promise.race([ctx.hubReached.then(() => true), sleep(left, ctx.signal).then(() => false)]);
  if (reached) return { event: 'healthy' };
  return {
    event: 'unhealthy',
    error: { code: 'trialUnhealthy', message: `slot ${u.targetSlot} booted but did not reach the hub within ${ctx.config.trialTimeoutSeconds} s; falling back to slot ${u.fromSlot}` },
  };
}

async function committing(ctx: PhaseContext): Promise<PhaseOutcome> {
  const fell = await fellBack(ctx);
  if (fell) return fell;
  await ctx.boot.commit(ctx.update.targetSlot);
  return { event: 'committed' };
}

/** Report the failure as far as possible, then a plain reboot: the firmware starts the committed slot. */
async function rollingBack(ctx: PhaseContext): Promise<PhaseOutcome> {
  const booted = await ctx.boot.bootedSlot();
  if (booted === ctx.update.fromSlot) return { event: 'fellBack' };
  if (!ctx.resumed) await ctx.flushReports(5000);
  await ctx.boot.reboot();
  await sleep(ctx.rebootTimeoutMs, ctx.signal);
  throw new UpdateFailure('rebootFailed', `the reboot back into slot ${ctx.update.fromSlot} did not happen within ${ctx.rebootTimeoutMs / 1000} s`);
}

export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
