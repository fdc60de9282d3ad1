import { cleanUp } from './clean-up.js';
import { formatDuration } from './definition.js';
import { desiredReleaseId, EvidenceReader, hasDesiredRelease, inRolloutCondition, rolloutTagOf } from './evidence.js';
import { haltVerdict } from './halt-rule.js';
import { HubCallError, type ConfigurationSpec, type DeviceTwin, type RolloutHub } from './hub-port.js';
import { isSettled, type DeviceOutcome } from './outcome.js';
import { pickWave } from './plan.js';
import { mayDrive, type RecordStore, type StoredRecord } from './record-store.js';
import { RECORD_TAG, type RolloutRecord, type WaveRecord } from './record.js';
import { applyEvent, isFinal, logDecision } from './state-machine.js';
import { countOutcomes, rolloutStatus, type RolloutStatus } from './status.js';
import { desiredRelease, waveConfiguration } from './wave-configuration.js';

export interface ControllerOptions {
  hub: RolloutHub;
  store: RecordStore;
  name: string;
  /** This process as a controller (record-store.ts controllerIdentity). */
  owner: string;
  /** How long the lease lasts without renewal; a dead controller is taken over after it. */
  leaseMs: number;
  /** The pause between two looks at the hub (the pacer may make it longer on a small tier). */
  pollMs: number;
  /** Return when the rollout is paused (start) instead of waiting for `continue` (run). */
  stopWhenPaused: boolean;
  /** Each look's picture, for the terminal. */
  onStatus?(status: RolloutStatus): void;
  /** A line about a decision or a wait ("waiting for the lease held by …"). */
  onNote?(line: string): void;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  signal?: AbortSignal;
}

export type DriveEnd = { end: 'final' | 'paused'; record: RolloutRecord } | { end: 'stopped'; record: RolloutRecord };

type Step = { kind: 'startWave'; wave: WaveRecord } | { kind: 'cleanUp' } | { kind: 'none' };

/**
 * The controller loop: a rollout is driven by looking at the hub, deciding on the record (guarded
 * by its etag, so a pause or abort written meanwhile is seen, never overwritten), and only then
 * acting (tagging a wave, scheduling its job, cancelling). Everything it knows is in the hub, so
 * a controller that dies loses nothing: the next `run` takes over once the lease expires.
 */
export async function driveRollout(o: ControllerOptions): Promise<DriveEnd> {
  const now = o.now ?? Date.now;
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const evidence = new EvidenceReader(o.hub);
  let heldBefore = false;
  let lastWaitNote = '';
  let failures = 0;
  for (;;) {
    if (o.signal?.aborted) {
      const stored = await o.store.read(o.name);
      return { end: 'stopped', record: stored.record };
    }
    let stored: StoredRecord;
    let looked: Awaited<ReturnType<EvidenceReader['read']>>;
    try {
      stored = await o.store.read(o.name);
      looked = await evidence.read(stored.record, now());
      failures = 0;
    } catch (err) {
      if (!isTransient(err)) throw err;
      // The hub blinked (reset connection, 5xx, throttled past the pacer's retries): everything
      // is in the hub, so the next look starts again from there.
      failures++;
      o.onNote?.(`look ${failures} at the hub failed (${(err as Error).message}); trying again`);
      await sleep(Math.min(30_000, 1000 * 2 ** Math.min(failures, 5)));
      continue;
    }
    const rec = stored.record;
    if (isFinal(rec.state) && rec.cleanedUp) return { end: 'final', record: rec };
    if (!mayDrive(rec, o.owner, now())) {
      if (heldBefore) {
        o.onNote?.(`rollout '${o.name}' was taken over by ${rec.controller!.owner}; this controller stops`);
        return { end: 'stopped', record: rec };
      }
      const note = `rollout '${o.name}' is driven by ${rec.controller!.owner}; waiting to take over if its lease (renewed every look) expires at ${new Date(rec.controller!.expiresAt).toISOString()}`;
      if (note !== lastWaitNote) o.onNote?.(note);
      lastWaitNote = note;
      await sleep(Math.max(1000, Math.min(o.pollMs, rec.controller!.expiresAt - now() + 50)));
      continue;
    }
    const { twins, outcomes } = looked;
    const { next, step } = decide(rec, outcomes, o, now());
    try {
      const written = await o.store.write(stored, next);
      if (!written) continue; // someone wrote first (a pause, an abort): look again
      heldBefore = true;
      o.onStatus?.(rolloutStatus(next, outcomes, now()));
      await act(step, written, twins, outcomes, o, now);
    } catch (err) {
      if (!isTransient(err)) throw err;
      // Every step is re-runnable from the record: a wave half-tagged is tagged on, a job
      // scheduled is found by its id, a clean-up finds less to do.
      failures++;
      o.onNote?.(`acting on the hub failed (${(err as Error).message}); trying again from the record`);
      await sleep(Math.min(30_000, 1000 * 2 ** Math.min(failures, 5)));
      continue;
    }
    if (next.state === 'paused' && o.stopWhenPaused) {
      const after = await o.store.update(o.name, (r) => (r.controller?.owner === o.owner ? { ...r, controller: null } : r));
      return { end: 'paused', record: after.record };
    }
    if (isFinal(next.state) && step.kind !== 'cleanUp' && next.cleanedUp) return { end: 'final', record: next };
    if (step.kind === 'none') await sleep(o.pollMs);
  }
}

/**
 * One look's decision, pure: the lease renewed, the halt rule, the current wave's end, the next
 * wave's start, completion. Side effects come back as a `step` for `act`.
 */
export function decide(rec: RolloutRecord, outcomes: readonly DeviceOutcome[], o: Pick<ControllerOptions, 'owner' | 'leaseMs'>, nowMs: number): { next: RolloutRecord; step: Step } {
  const at = new Date(nowMs);
  let next: RolloutRecord = { ...rec, waves: rec.waves.map((w) => ({ ...w })), controller: { owner: o.owner, expiresAt: nowMs + o.leaseMs } };
  if (rec.controller?.owner !== o.owner) {
    const why = rec.controller ? `the lease of ${rec.controller.owner} expired at ${new Date(rec.controller.expiresAt).toISOString()}` : 'no controller held it';
    next = logDecision(next, `controller ${o.owner} drives the rollout`, why, at);
  }
  if (isFinal(next.state)) return { next, step: next.cleanedUp || next.state === 'completed' ? { kind: 'none' } : { kind: 'cleanUp' } };

  const started = new Set(next.waves.filter((w) => w.stage === 'started' || w.stage === 'done').map((w) => w.wave));
  const verdict = haltVerdict(countOutcomes(outcomes.filter((x) => started.has(x.wave))), next.definition.halt);
  const current = next.waves.find((w) => w.stage !== 'done' && w.stage !== 'skipped');
  if (verdict.halt) {
    next = applyEvent(next, { type: 'halt', reason: `${current ? `in wave ${current.wave}: ` : ''}${verdict.reason}` }, at);
    return { next, step: { kind: 'cleanUp' } };
  }
  if (next.state !== 'running') return { next, step: { kind: 'none' } };
  if (!current) {
    next = applyEvent(next, { type: 'complete', reason: `all ${next.waves.length} waves done` }, at);
    return { next: { ...next, cleanedUp: true }, step: { kind: 'none' } };
  }
  if (current.stage === 'pending' || current.stage === 'tagging') {
    const w = next.waves.find((x) => x.wave === current.wave)!;
    if (w.stage === 'pending') {
      w.stage = 'tagging';
      next = logDecision(next, `wave ${w.wave} starts`, `the rollout reaches ${w.cumulativeSize} of ${next.targetedDevices} devices with it`, at);
    }
    return { next, step: { kind: 'startWave', wave: w } };
  }
  // started: the wave ends when each device has settled, or at its timeout. Its job is left to
  // run (a timeout stops the waiting, not the wave): on S1 the next wave's job waits for it.
  const mine = outcomes.filter((x) => x.wave === current.wave);
  const settled = mine.length >= current.devices && mine.every((x) => isSettled(x.stage));
  const elapsed = nowMs - Date.parse(current.startedAt ?? at.toISOString());
  const timedOut = elapsed >= next.definition.waveTimeoutMs;
  if (!settled && !timedOut) return { next, step: { kind: 'none' } };
  const w = next.waves.find((x) => x.wave === current.wave)!;
  const c = countOutcomes(mine);
  w.stage = 'done';
  w.endedAt = at.toISOString();
  w.endReason = settled
    ? `every device settled: ${c.succeeded} succeeded, ${c.failed} failed, ${c.offline} offline`
    : `--wave-timeout ${formatDuration(next.definition.waveTimeoutMs)} passed with ${c.running} device(s) still running (${c.succeeded} succeeded, ${c.failed} failed, ${c.offline} offline)`;
  next = logDecision(next, `wave ${w.wave} ends`, w.endReason, at);
  return { next, step: { kind: 'none' } };
}

async function act(step: Step, stored: StoredRecord, twins: DeviceTwin[], outcomes: readonly DeviceOutcome[], o: ControllerOptions, now: () => number): Promise<void> {
  const rec = stored.record;
  if (rec.state === 'running' || rec.state === 'paused') await offerDesiredRelease(o.hub, rec, twins, outcomes);
  if (step.kind === 'cleanUp') {
    const report = await cleanUp(o.hub, rec, outcomes, twins);
    const summary = `${report.jobsCancelled.length} job(s) cancelled, ${report.configurationsRemoved.length} configuration(s) deleted, firmwareUpdateCancel sent to ${report.cancelSent.length} device(s), desired release removed from ${report.desiredCleared.length}${report.problems.length ? `; ${report.problems.length} problem(s): ${report.problems.slice(0, 3).join('; ')}` : ''}`;
    o.onNote?.(`clean-up after ${rec.state}: ${summary}`);
    await o.store.update(o.name, (r) => logDecision({ ...r, cleanedUp: true }, `clean-up after ${r.state}`, summary, new Date(now())));
  } else if (step.kind === 'startWave') {
    await startWave(o, rec, step.wave, now);
  }
}

/** Tags the wave's devices (the next ones in the stable order), then schedules its job. Re-runnable. */
async function startWave(o: ControllerOptions, rec: RolloutRecord, wave: WaveRecord, now: () => number): Promise<void> {
  const d = rec.definition;
  const inRollout = await o.hub.queryTwins(inRolloutCondition(d.name));
  const already = inRollout.filter((t) => rolloutTagOf(t)?.name === d.name);
  const inThisWave = already.filter((t) => rolloutTagOf(t)!.wave === wave.wave).length;
  const known = new Set(already.map((t) => t.deviceId));
  const candidates = (await o.hub.queryTwins(d.target)).filter((t) => t.tags[RECORD_TAG] === undefined && !known.has(t.deviceId)).map((t) => t.deviceId);
  const picked = pickWave(d.name, candidates, already.length, wave.cumulativeSize);
  await inParallel(picked, 8, (id) => o.hub.updateTwin(id, { tags: { piota: { rollout: { name: d.name, wave: wave.wave } } } }));
  const devices = inThisWave + picked.length;
  const at = new Date(now());
  if (devices === 0) {
    await o.store.update(o.name, (r) => logDecision(withWave(r, wave.wave, { stage: 'skipped', devices: 0, endedAt: at.toISOString(), endReason: 'no device to add' }), `wave ${wave.wave} skipped`, `it adds no device (${already.length} already in the rollout, ${candidates.length} more match the target)`, at));
    return;
  }
  if (d.via === 'configuration') {
    // The hub applies the configuration to the wave's tagged devices itself (and to each one that
    // matches later), so there is no query index to wait for; offline devices get it too.
    const spec = waveConfiguration(d, wave.wave);
    await addConfiguration(o, spec);
    await o.store.update(o.name, (r) =>
      logDecision(withWave(r, wave.wave, { stage: 'started', devices, configurationId: spec.id, startedAt: at.toISOString() }), `wave ${wave.wave} configuration ${spec.id} created`, `${devices} device(s) tagged tags.piota.rollout = {name: '${d.name}', wave: ${wave.wave}} get the desired release ${desiredReleaseId(d.name)}`, at),
    );
    return;
  }
  const jobId = `piota-${d.name}-w${wave.wave}`;
  await untilIndexed(o, d.name, wave.wave, devices);
  await scheduleJob(o, rec, wave.wave, jobId);
  await o.store.update(o.name, (r) =>
    logDecision(withWave(r, wave.wave, { stage: 'started', devices, jobId, startedAt: at.toISOString() }), `wave ${wave.wave} job ${jobId} scheduled`, `${devices} device(s) tagged tags.piota.rollout = {name: '${d.name}', wave: ${wave.wave}}`, at),
  );
}

/**
 * IoT Hub's query index follows twin writes with a delay (queries are eventually consistent), and
 * a job selects its devices with a query when it starts: wait until the wave's tags are visible to
 * queries, so the job reaches every tagged device. Bounded: after a minute the job goes anyway,
 * and a device it missed is still counted (pending) until the wave's timeout.
 */
async function untilIndexed(o: ControllerOptions, name: string, wave: number, expected: number): Promise<void> {
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const now = o.now ?? Date.now;
  const until = now() + 60_000;
  for (;;) {
    const seen = (await o.hub.queryTwins(inRolloutCondition(name, wave))).length;
    if (seen >= expected) return;
    if (now() >= until) {
      o.onNote?.(`wave ${wave}: the hub's query index shows ${seen} of ${expected} tagged devices after a minute; scheduling the job anyway`);
      return;
    }
    await sleep(Math.max(1000, o.pollMs));
  }
}

async function scheduleJob(o: ControllerOptions, rec: RolloutRecord, wave: number, jobId: string): Promise<void> {
  const d = rec.definition;
  if (await o.hub.getJob(jobId)) return; // scheduled before a crash: the same job goes on
  const payload: Record<string, unknown> = { fwPackageUri: d.release.fwPackageUri, version: d.release.version };
  if (d.release.sha256) payload.sha256 = d.release.sha256;
  if (d.release.applyNow) payload.applyWindow = 'now';
  for (;;) {
    try {
      await o.hub.scheduleMethodJob(
        jobId,
        inRolloutCondition(d.name, wave),
        { methodName: 'firmwareUpdate', payload, responseTimeoutInSeconds: 60, connectTimeoutInSeconds: d.connectTimeoutS },
        Math.max(60, Math.ceil(d.waveTimeoutMs / 1000)),
      );
      return;
    } catch (err) {
      if (err instanceof HubCallError && err.kind === 'exists') return;
      // The hub's one job at a time (S1) may be the previous wave's, still reaching late devices, or
      // another program's: the pacer already backed off on 429s; say what we wait for and try
      // again rather than fail the rollout.
      if (err instanceof HubCallError && err.kind === 'throttled') {
        o.onNote?.(`job ${jobId} waits: ${err.message}`);
        await (o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms))))(o.pollMs);
        continue;
      }
      throw err;
    }
  }
}

/** Creates the wave's configuration; one created before a crash is the same wave going on. */
async function addConfiguration(o: ControllerOptions, spec: ConfigurationSpec): Promise<void> {
  try {
    await o.hub.addConfiguration(spec);
  } catch (err) {
    if (err instanceof HubCallError && err.kind === 'exists') return;
    throw err;
  }
}

/** Devices the wave's job could not reach get the release as a desired property, applied when they connect. */
async function offerDesiredRelease(hub: RolloutHub, rec: RolloutRecord, twins: DeviceTwin[], outcomes: readonly DeviceOutcome[]): Promise<void> {
  const d = rec.definition;
  // Through configurations every device of a wave has the release already, written by the hub.
  if (d.via === 'configuration') return;
  const offline = new Set(outcomes.filter((x) => x.stage === 'offline').map((x) => x.deviceId));
  const release = desiredRelease(d);
  const todo = twins.filter((t) => offline.has(t.deviceId) && !hasDesiredRelease(t, d.name));
  await inParallel(todo, 8, (t) => hub.updateTwin(t.deviceId, { properties: { desired: { piota: { firmware: release } } } }));
}

/** A hub failure worth another look: unreachable, reset, 5xx, or throttled beyond the pacer's retries. */
function isTransient(err: unknown): boolean {
  if (!(err instanceof HubCallError)) return false;
  return err.kind === 'unreachable' || err.kind === 'throttled' || (err.kind === 'other' && (err.status ?? 0) >= 500);
}

function withWave(r: RolloutRecord, wave: number, change: Partial<WaveRecord>): RolloutRecord {
  return { ...r, waves: r.waves.map((w) => (w.wave === wave ? { ...w, ...change } : w)) };
}

async function inParallel<T>(items: readonly T[], width: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      while (i < items.length) await fn(items[i++]);
    }),
  );
}
