import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { World, waitFor, type SimulatedPi, type StatusJson, type StatusUpdate } from './world.js';
import { startCheck, statusPathViolations, TERMINAL, updateViolations, type CheckedUpdate, type UpdateObservation } from './invariants.js';
import { seeded } from '../helpers/seeded-random.js';

// Power cuts at random instants over many updates, with the real daemon in `piota simulate`, the
// hub emulator and HTTPS on loopback. Each simulated Pi runs its updates one after the other (the
// next is triggered once the previous ended; its first one is clean and measures the machine);
// during each, the daemon is cut 0, 1 or 2 times at a random instant (SIGKILL: the simulator boots
// the board again by the firmware's tryboot rules). Every update must end consistently
// (invariants.ts), and an update whose cuts all fell before applying started must still complete.
// The assertions never depend on where a cut landed; the log says where each one did.
//
//   PIOTA_SOAK_SEED=<n>     replay a run's plan (how many cuts, aimed where, at what fraction of
//                           the stretch). The stretches are measured in the run, so where a cut
//                           lands still depends on the machine's speed.
//   PIOTA_SOAK_UPDATES=<n>  how many updates in all (default 30).
//   PIOTA_SOAK_DEVICES=<n>  simulated Pis sharing them, side by side (default 3).

function envInteger(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min) throw new Error(`${name}='${raw}': expected an integer of at least ${min}`);
  return Number(raw);
}

const SEED = envInteger('PIOTA_SOAK_SEED', Math.floor(Math.random() * 2 ** 31), 0);
const UPDATES = envInteger('PIOTA_SOAK_UPDATES', 30, 1);
/** Simulated Pis updating side by side, each its own updates one after the other. */
const DEVICES = Math.min(envInteger('PIOTA_SOAK_DEVICES', 3, 1), UPDATES);
/** Every image has the same size, so a slot's bytes past the image stay zero (see verifiedContent). */
const IMAGE = { rootfsBytes: 192 * 1024, bootBytes: 32 * 1024, chunkSize: 32 * 1024 };
/** The download is slowed so that it is a fair share of an update, as it is on a real Pi. */
const DOWNLOAD_BYTES_PER_SECOND = 400 * 1024;
const PRE_APPLY = ['waiting', 'downloading', 'downloadComplete'];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface CutRecord {
  anchor: Anchor;
  /** ms after the trigger's answer. */
  atMs: number;
  /** What `piota status --json` said with the daemon frozen at the cut; 'ended' when it had already ended. */
  status: string;
  phase?: string;
  /** What the firmware booted next: 'powerCut' (a plain boot), or 'tryboot' when the cut fell in a reboot's shutdown. */
  bootCause?: string;
}

interface UpdateReport {
  device: string;
  index: number;
  updateId: string;
  final: string;
  errorCode?: string;
  cuts: CutRecord[];
  durationMs: number;
  violations: string[];
}

let world: World;
const reports: UpdateReport[] = [];
const startedAt = Date.now();

beforeAll(async () => {
  console.log(`power-cut soak: seed ${SEED} (replay with PIOTA_SOAK_SEED=${SEED}), ${UPDATES} updates on ${DEVICES} simulated Pis`);
  world = await World.create();
  world.files.faults.bytesPerSecond = DOWNLOAD_BYTES_PER_SECOND;
}, 60_000);

afterAll(async () => {
  await world?.close();
  if (reports.length > 0) console.log(summary(reports, Date.now() - startedAt));
});

/**
 * Where a cut is aimed: a random instant of the update's whole span, of the stretch from the
 * trigger to the twin's first `applying` (download, verification), or of the stretch from the
 * trial boot to the end (the trial daemon's start-up, the trial, the commit). Pure wall-clock
 * instants mostly land in the reboot (the reboot command, the shutdown, the new daemon's start),
 * the longest stretch of an update; aiming at a stretch reaches the others too. The stretches are
 * measured on the Pi's clean updates, so they follow the machine's speed.
 */
type Anchor = 'span' | 'trigger' | 'trialBoot';

interface PlannedCut {
  anchor: Anchor;
  /** Where in the stretch, as a fraction of it. */
  at: number;
}

interface Stretches {
  span: number;
  trigger: number;
  trialBoot: number;
}

function planCuts(random: () => number, first: boolean): PlannedCut[] {
  const count = first ? 0 : pick(random, [[0, 0.15], [1, 0.6], [2, 0.25]]);
  return Array.from({ length: count }, () => ({
    anchor: pick<Anchor>(random, [['span', 0.3], ['trigger', 0.35], ['trialBoot', 0.35]]),
    at: random(),
  }));
}

/** The stretches of a clean update, from its trigger time, its end on the twin, its patches and the boot record. */
function measure(t0: number, done: CheckedUpdate, before: Stretches): Stretches {
  const trial = done.observation.boots.find((b) => b.trial);
  const trialAt = trial ? Date.parse(trial.at) - t0 : done.endMs;
  const applying = done.observation.patches.find((p) => p.patch.iothubDM?.firmwareUpdate?.status === 'applying');
  return {
    span: Math.max(before.span, done.endMs),
    trigger: Math.max(before.trigger, applying ? applying.at - t0 : trialAt),
    trialBoot: Math.max(before.trialBoot, done.endMs - trialAt),
  };
}

/** Plays `count` updates on one simulated Pi; each one's report goes to `reports`. */
async function soak(pi: SimulatedPi, device: number, count: number, random: () => number): Promise<void> {
  let stretches: Stretches = { span: 0, trigger: 0, trialBoot: 0 };
  let previous: CheckedUpdate | undefined;
  for (let index = 0; index < count; index++) {
    const plan = planCuts(random, index === 0);
    const version = `${index + 2}.0.${device}`;
    const bundle = await world.bundle(`${pi.deviceId}-${index}`, { version, ...IMAGE });
    const check = await startCheck(world, pi, bundle, previous);

    const t0 = Date.now();
    const answer = await world.invoke(pi.deviceId, 'firmwareUpdate', { fwPackageUri: bundle.url });
    expect(answer.status, `seed ${SEED}: ${pi.deviceId} update ${index}: the trigger was refused: ${JSON.stringify(answer.payload)}`).toBe(200);
    const updateId = answer.payload.updateId as string;
    const cuts: CutRecord[] = [];
    for (const planned of plan) {
      const reached = await waitForAnchor(pi, updateId, planned.anchor);
      const cut = reached ? await (async () => {
        await sleep(Math.floor(planned.at * stretches[planned.anchor]));
        return cutNow(pi);
      })() : { status: 'ended' };
      cuts.push({ anchor: planned.anchor, atMs: Date.now() - t0, ...cut });
      if (cut.status === 'ended') break;
    }
    const done = await check.finish(updateId);
    const durationMs = Date.now() - t0;
    if (plan.length === 0) stretches = measure(t0, done, stretches);

    const violations = [...done.violations];
    // A cut before applying started loses nothing: the update resumes and completes.
    const landed = cuts.filter((c) => c.status !== 'ended');
    if (landed.every((c) => PRE_APPLY.includes(c.status)) && done.final !== 'applyComplete') {
      violations.push(`every cut fell before applying (${landed.map((c) => c.status).join(', ') || 'no cut'}), yet the update ended '${done.final}'`);
    }
    const report: UpdateReport = { device: pi.deviceId, index, updateId, final: done.final, errorCode: done.errorCode, cuts, durationMs, violations };
    reports.push(report);
    console.log(describeUpdate(report));
    previous = done;
  }
}

/** Waits for the anchor, seen from now on; false when the update ended first. */
async function waitForAnchor(pi: SimulatedPi, updateId: string, anchor: Anchor): Promise<boolean> {
  if (anchor === 'span' || anchor === 'trigger') return true;
  const bootCount = (await pi.sim()).bootCount;
  const ended = async () => {
    const fu = (await world.reported(pi.deviceId)).iothubDM?.firmwareUpdate;
    return fu?.updateId === updateId && TERMINAL.includes(fu.status);
  };
  const seen = await waitFor(`the anchor '${anchor}' or the end of ${updateId}`, async () => {
    const sim = await pi.sim();
    // A new boot, a trial, its daemon started (a committed trial stays `trial` until the next boot).
    if (sim.bootCount > bootCount && sim.trial && sim.daemonPid !== null) return 'anchor';
    return (await ended()) ? 'ended' : undefined;
  }, 90_000);
  return seen === 'anchor';
}

/**
 * A power cut now. The daemon is frozen first (SIGSTOP: nothing it does after this instant
 * happens), so `piota status --json` tells what was on disk at the cut; then SIGKILL, which the
 * simulator takes as a power cut. A board between boots has no daemon: the cut waits for the next.
 */
async function cutNow(pi: SimulatedPi): Promise<{ status: string; phase?: string; bootCause?: string }> {
  const { pid, bootCount } = await waitFor('a daemon to cut', async () => {
    const s = await pi.sim();
    if (s.daemonPid === null) return undefined;
    const frozen = await pi.freeze();
    return frozen === undefined ? undefined : { pid: frozen, bootCount: s.bootCount };
  }, 30_000);
  let onDisk: StatusJson;
  try {
    onDisk = await pi.status();
  } catch (err) {
    pi.thaw(pid);
    throw err;
  }
  if (onDisk.update === null) {
    pi.thaw(pid);
    return { status: 'ended' };
  }
  await pi.cutFrozen(pid, bootCount);
  // The simulator takes a SIGKILL as a power cut, except while it is itself stopping the daemon for
  // a reboot the daemon asked for: then it boots as asked (see the report of the boot that followed).
  const next = (await pi.bootRecords()).find((b) => b.boot === bootCount + 1);
  return { status: onDisk.update.status, phase: onDisk.update.phase, bootCause: next?.cause };
}

function pick<T>(random: () => number, weighted: [T, number][]): T {
  let r = random();
  for (const [value, weight] of weighted) {
    if (r < weight) return value;
    r -= weight;
  }
  return weighted[weighted.length - 1][0];
}

function describeUpdate(r: UpdateReport): string {
  const cuts = r.cuts.length === 0 ? 'no cut' : r.cuts.map((c) => `cut at ${c.atMs} ms (${c.status}${c.phase ? `/${c.phase}` : ''}, aimed at ${c.anchor}${c.bootCause && c.bootCause !== 'powerCut' ? `, then ${c.bootCause}` : ''})`).join(', ');
  const end = r.errorCode ? `${r.final} (${r.errorCode})` : r.final;
  return `${r.device} #${r.index}: ${cuts} → ${end} in ${r.durationMs} ms${r.violations.length ? ` — ${r.violations.length} VIOLATIONS` : ''}`;
}

function summary(all: UpdateReport[], totalMs: number): string {
  const count = (keys: string[]) => Object.entries(keys.reduce<Record<string, number>>((m, k) => ((m[k] = (m[k] ?? 0) + 1), m), {})).map(([k, n]) => `${k} ${n}`).join(', ');
  const durations = all.map((r) => r.durationMs).sort((a, b) => a - b);
  const mean = Math.round(durations.reduce((a, b) => a + b, 0) / durations.length);
  return [
    `power-cut soak, seed ${SEED}: ${all.length} updates in ${(totalMs / 1000).toFixed(1)} s`,
    `  per update: mean ${mean} ms, median ${durations[Math.floor(durations.length / 2)]} ms, max ${durations[durations.length - 1]} ms`,
    `  cuts by status on disk: ${count(all.flatMap((r) => r.cuts.map((c) => (c.phase ? `${c.status}/${c.phase}` : c.status)))) || 'none'}`,
    `  outcomes: ${count(all.map((r) => (r.errorCode ? `${r.final}(${r.errorCode})` : r.final)))}`,
  ].join('\n');
}

describe('the outcome checker', () => {
  // The soak's verdicts are only as good as the checker: it must reject the paths it exists to reject.
  it('accepts the paths of the workflow, with repeats and skipped statuses', () => {
    expect(statusPathViolations(['waiting', 'downloading', 'downloading', 'downloadComplete', 'applying', 'applyComplete'])).toEqual([]);
    expect(statusPathViolations(['waiting', 'applying', 'applyFailed', 'applyFailed'])).toEqual([]);
    expect(statusPathViolations(['downloading', 'downloadFailed'])).toEqual([]);
  });

  it('rejects going back, a second end, downloadFailed after applying, and unknown statuses', () => {
    expect(statusPathViolations(['downloading', 'waiting'])).toEqual([`'waiting' after 'downloading' goes back`]);
    expect(statusPathViolations(['applying', 'applyComplete', 'applyFailed'])).toEqual([`'applyFailed' after the update ended with 'applyComplete'`]);
    expect(statusPathViolations(['applying', 'downloadFailed'])).toHaveLength(1);
    expect(statusPathViolations(['waiting', 'rebooting'])).toEqual([`'rebooting' is not a status of the workflow`]);
  });

  /** A consistent successful update from A to B, as the checker sees one; each test breaks one fact. */
  function success(): UpdateObservation {
    const old = { boot: 'a-boot', rootfs: 'a-rootfs' };
    const image = { boot: 'image-boot', rootfs: 'image-rootfs' };
    const slots = { A: { boot: '/A-boot', rootfs: '/A-rootfs' }, B: { boot: '/B-boot', rootfs: '/B-rootfs' } };
    const status = (booted: 'A' | 'B', version: string, update: StatusUpdate | null): StatusJson => ({
      bootedSlot: booted, committedSlot: booted, trialBoot: booted === 'B', runningVersion: version,
      slots: { A: null, B: null }, update: null, lastResult: update, desiredFirmware: null,
    });
    const end: StatusUpdate = { updateId: 'u1', status: 'applyComplete', phase: 'applyComplete', targetSlot: 'B', targetVersion: '2.0.0', error: null };
    const fu = (s: string) => ({ iothubDM: { firmwareUpdate: { status: s, updateId: 'u1' }, firmwareVersion: s === 'applyComplete' ? '2.0.0' : '1.0.0' }, piota: { bootedSlot: s === 'applyComplete' ? 'B' : 'A' } });
    return {
      updateId: 'u1', version: '2.0.0', image,
      before: { status: status('A', '1.0.0', null), content: { A: old, B: { boot: 'zeros', rootfs: 'zeros' } } },
      after: {
        status: status('B', '2.0.0', end),
        sim: { daemonPid: 1, bootedSlot: 'B', trial: true, bootCount: 2, autoboot: '/autoboot.txt', slots, partitions: { A: 2, B: 3 } },
        content: { A: old, B: image },
        committedPartition: 3,
      },
      twin: { iothubDM: { firmwareUpdate: { status: 'applyComplete', updateId: 'u1', error: null }, firmwareVersion: '2.0.0' }, piota: { bootedSlot: 'B', committedSlot: 'B' } },
      boots: [{ boot: 2, at: '', cause: 'tryboot', slot: 'B', partition: 3, trial: true, sha256: image }],
      patches: ['waiting', 'downloading', 'applying', 'applyComplete'].map((s, seq) => ({ deviceId: 'd', seq, at: 0, patch: fu(s) })),
    };
  }

  it('finds nothing wrong with a consistent update, and names each broken fact', () => {
    expect(updateViolations(success())).toEqual([]);
    const broken = (change: (o: UpdateObservation) => void) => {
      const o = success();
      change(o);
      return updateViolations(o).join('\n');
    };
    expect(broken((o) => (o.after.sim.bootedSlot = 'A'))).toMatch(/the board booted A but piota status says B/);
    expect(broken((o) => (o.after.content.B = { boot: 'image-boot', rootfs: 'other' }))).toMatch(/slot B does not hold the image/);
    expect(broken((o) => (o.boots[0].sha256 = { boot: 'image-boot', rootfs: 'half-written' }))).toMatch(/booted bytes that are not the verified image/);
    expect(broken((o) => (o.after.status.lastResult!.status = 'applyFailed'))).toMatch(/the twin says 'applyComplete' but piota status says 'applyFailed'/);
    expect(broken((o) => (o.after.content.A = { boot: 'a-boot', rootfs: 'overwritten' }))).toMatch(/the old slot A was written/);
    const stale = { deviceId: 'd', seq: 9, at: 0, patch: { iothubDM: { firmwareUpdate: { status: 'downloading', updateId: 'u0' } } } };
    expect(broken((o) => (o.patches = [...o.patches.slice(0, 2), stale, ...o.patches.slice(2)])))
      .toMatch(/update u0 was reported after update u1 started/);
    expect(broken((o) => (o.boots = []))).toMatch(/the twin showed slot B booted, but the board never booted it/);
  });
});

describe('power cuts at random instants', () => {
  it(`${UPDATES} updates end consistently, whatever instant the power is cut`, async () => {
    const pis = await Promise.all(Array.from({ length: DEVICES }, (_, d) => world.pi(`soak-${d}`, { bootRecord: true })));
    const random = seeded(SEED);
    // One generator per Pi, drawn from the seed in order, so each Pi's plan replays on its own.
    const perPi = pis.map(() => seeded(Math.floor(random() * 2 ** 31)));
    await Promise.all(pis.map((pi, d) => soak(pi, d, Math.floor(UPDATES / DEVICES) + (d < UPDATES % DEVICES ? 1 : 0), perPi[d])));

    const broken = reports.filter((r) => r.violations.length > 0);
    const explain = broken.map((r) => `${describeUpdate(r)}\n    ${r.violations.join('\n    ')}`).join('\n');
    expect(broken, `seed ${SEED} (replay: PIOTA_SOAK_SEED=${SEED}):\n${explain}`).toEqual([]);
    expect(reports).toHaveLength(UPDATES);
  }, 120_000 + UPDATES * 30_000);
});
