import { DownloadError } from '../../download/errors.js';
import { retryDelayMs } from '../../download/retry-policy.js';
import type { PhaseContext } from './context.js';
import { deviceTrust } from './context.js';
import type { PhaseOutcome } from './spec.js';
import { UpdateFailure } from './update-errors.js';

/**
 * Each phase's work, in workflow order (the table in spec.ts says which is which). A work function
 * returns the event it ended with, or throws; the runner maps what it throws to an error code.
 */

/** Nothing holds an update before its download (the window only gates applying). */
export async function waiting(): Promise<PhaseOutcome> {
  return { event: 'start' };
}

export async function downloading(ctx: PhaseContext): Promise<PhaseOutcome> {
  const { config } = ctx.settings;
  const { boot, logger, clock } = ctx.ports;
  // The target slot is about to be rewritten: no tryboot may point at it, and its record no longer holds.
  await boot.clearTrial();
  if (ctx.state.slots[ctx.update.targetSlot] !== null) {
    ctx.state.slots[ctx.update.targetSlot] = null;
    await ctx.save();
  }
  // Loaded here, not at the top: the download stack (the HTTPS client, the verifier) stays out of light commands
  // such as `piota status`, which read the workflow table.
  const { downloadToSlot } = await import('../download-to-slot.js');
  const retry = config.download.retry;
  for (let attempt = 1; ; attempt++) {
    try {
      await downloadToSlot(ctx.update, {
        open: ctx.ports.http,
        storage: ctx.ports.storage,
        trust: deviceTrust(ctx),
        targetPartitions: config.slots[ctx.update.targetSlot],
        request: {
          ca: ctx.settings.downloadCa,
          proxy: config.download.proxy,
          // Whole milliseconds: 1.1 s * 1000 is 1100.0000000000002, which the download refuses.
          idleTimeoutMs: Math.round(config.download.idleTimeoutSeconds * 1000),
          deadlineMs: config.download.deadlineSeconds === null ? undefined : Math.round(config.download.deadlineSeconds * 1000),
          minSpeed: config.download.minBytesPerSecond === null ? undefined : { bytesPerSecond: config.download.minBytesPerSecond, windowMs: 60_000 },
        },
        logger,
        checkpoint: () => ctx.save(),
        progress: () => ctx.ports.progressChanged(),
        signal: ctx.signal,
        allowPlainImages: config.allowPlainImages,
        // Format 2 bundles reuse what the slots hold, fetching only the rest (docs/adaptive-updates.md).
        adaptive: config.download.adaptive
          ? { runningPartitions: config.slots[ctx.update.fromSlot], runningSlot: ctx.update.fromSlot, targetSlot: ctx.update.targetSlot, stateDir: config.stateDir }
          : undefined,
      });
      return { event: 'downloaded' };
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      if (err instanceof DownloadError && err.transient && attempt < retry.attempts) {
        const delay = retryDelayMs(attempt, { firstDelayMs: Math.round(retry.firstDelaySeconds * 1000), maxDelayMs: Math.round(retry.maxDelaySeconds * 1000) });
        logger.warn({ updateId: ctx.update.updateId, err: err.message, attempt, retryInMs: delay }, 'download interrupted; will resume');
        await clock.sleep(delay, ctx.signal);
        continue;
      }
      throw err;
    }
  }
}

export async function downloadComplete(ctx: PhaseContext): Promise<PhaseOutcome> {
  await ctx.ports.applyWindowOpen(ctx.update, ctx.signal);
  return { event: 'windowOpen' };
}

/** Reads back what was written, from the medium, and checks it against the signed manifest. */
export async function verifying(ctx: PhaseContext): Promise<PhaseOutcome> {
  const bundle = ctx.update.bundle;
  if (!bundle) throw new UpdateFailure('internalError', 'no bundle was recorded for this update');
  for (const p of bundle.payloads) {
    const path = ctx.settings.config.slots[ctx.update.targetSlot][p.name];
    const actual = await ctx.ports.storage.hashFromMedium(path, p.imageSize, ctx.signal);
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
    installedAt: new Date(ctx.ports.clock.now()).toISOString(),
  };
  return { event: 'verified' };
}

/**
 * Switches the boot to the new slot for one trial and reboots. Found at start-up, the phase says only
 * that this process restarted after asking: checkingBoot looks at what came up.
 */
export async function rebooting(ctx: PhaseContext): Promise<PhaseOutcome> {
  if (ctx.resumed) return { event: 'restarted' };
  const { targetSlot } = ctx.update;
  await flushBeforeReboot(ctx);
  await ctx.ports.boot.startTrial(targetSlot);
  const waitedS = await awaitRequestedReboot(ctx);
  throw new UpdateFailure('rebootFailed', `the trial reboot into slot ${targetSlot} was requested but did not happen within ${waitedS} s`);
}

/** After the trial reboot: the new slot on trial goes on; the old slot means the firmware fell back. */
export async function checkingBoot(ctx: PhaseContext): Promise<PhaseOutcome> {
  return (await fellBack(ctx)) ?? { event: 'bootedTrial' };
}

/**
 * A phase that runs on the new slot found the board on the old one: the trial hung, was reset or lost
 * power, or the trial guard rebooted it, and the firmware fell back.
 */
async function fellBack(ctx: PhaseContext): Promise<PhaseOutcome | undefined> {
  const { targetSlot, fromSlot } = ctx.update;
  if ((await ctx.ports.boot.bootedSlot()) === targetSlot) return undefined;
  return {
    event: 'fellBack',
    // From here the daemon cannot tell a trial that came up and fell back from a reboot that never
    // reached the trial (power lost first): the message says both.
    error: { code: 'trialFailed', message: `slot ${targetSlot} was not running after the trial reboot (the trial did not come up healthy, or the power went before it started); the board is on slot ${fromSlot}` },
  };
}

/** Healthy = the daemon started in the new slot, recovered its state and reached the hub in time. */
export async function trial(ctx: PhaseContext): Promise<PhaseOutcome> {
  const u = ctx.update;
  const fell = await fellBack(ctx);
  if (fell) return fell;
  const { clock } = ctx.ports;
  if (u.trialStartedAt === null) {
    u.trialStartedAt = clock.now();
    await ctx.save();
  }
  const timeoutS = ctx.settings.config.trialTimeoutSeconds;
  // A wall clock that jumped backwards (NTP) must not stretch the trial past its timeout.
  const left = Math.min(timeoutS * 1000, Math.max(0, u.trialStartedAt + timeoutS * 1000 - clock.now()));
  const reached = await Promise.race([ctx.ports.hubReached.then(() => true), clock.sleep(left, ctx.signal).then(() => false)]);
  if (reached) return { event: 'healthy' };
  return {
    event: 'unhealthy',
    error: { code: 'trialUnhealthy', message: `slot ${u.targetSlot} booted but did not reach the hub within ${timeoutS} s; falling back to slot ${u.fromSlot}` },
  };
}

/** Makes the new slot the default, then raises the anti-rollback floor to the bundle's security version. */
export async function committing(ctx: PhaseContext): Promise<PhaseOutcome> {
  const fell = await fellBack(ctx);
  if (fell) return fell;
  await ctx.ports.boot.commit(ctx.update.targetSlot);
  const bundle = ctx.update.bundle;
  if (bundle) await ctx.ports.securityFloor.raise(bundle.securityVersion, bundle.version);
  return { event: 'committed' };
}

/** Report the failure as far as possible, then a plain reboot: the firmware starts the committed slot. */
export async function rollingBack(ctx: PhaseContext): Promise<PhaseOutcome> {
  const booted = await ctx.ports.boot.bootedSlot();
  if (booted === ctx.update.fromSlot) return { event: 'fellBack' };
  if (!ctx.resumed) await flushBeforeReboot(ctx);
  await ctx.ports.boot.reboot();
  const waitedS = await awaitRequestedReboot(ctx);
  throw new UpdateFailure('rebootFailed', `the reboot back into slot ${ctx.update.fromSlot} did not happen within ${waitedS} s`);
}

/** How often a reboot that is late but under way is looked at again. */
const SHUTDOWN_RECHECK_MS = 10_000;

/**
 * Waits for a reboot that was asked for and accepted; when it returns (it has not happened), the
 * caller fails the update with rebootFailed. That takes rebootTimeoutSeconds, unless the system is
 * visibly shutting down by then: a shutdown that is slow to reach this daemon still stops it, and
 * failing meanwhile would point [tryboot] back at the committed slot just before the trial boot.
 * Resolves with the seconds waited; SIGTERM (the shutdown arriving) ends it through ctx.signal.
 */
async function awaitRequestedReboot(ctx: PhaseContext): Promise<number> {
  const { clock, logger } = ctx.ports;
  const started = clock.monotonic();
  const timeoutS = ctx.settings.config.rebootTimeoutSeconds;
  await clock.sleep(timeoutS * 1000, ctx.signal);
  let said = false;
  while (await ctx.ports.shutdownUnderWay()) {
    if (!said) logger.warn({ updateId: ctx.update.updateId, rebootTimeoutSeconds: timeoutS }, 'the reboot is taking longer than rebootTimeoutSeconds, but the system is shutting down: waiting for it');
    said = true;
    await clock.sleep(SHUTDOWN_RECHECK_MS, ctx.signal);
  }
  return Math.round((clock.monotonic() - started) / 100) / 10;
}

/**
 * Lets the hub hear the status before the reboot (at most 5 s), but never holds up a stop: SIGTERM
 * must end the daemon within 2 s, and the phase resumes at the next start anyway.
 */
async function flushBeforeReboot(ctx: PhaseContext): Promise<void> {
  const { signal } = ctx;
  signal.throwIfAborted();
  let onAbort!: () => void;
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    await Promise.race([ctx.ports.flushReports(5000), aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}
