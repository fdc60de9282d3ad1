import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFile, writeFile } from 'node:fs/promises';
import { World, waitFor, type SimulatedPi } from './world.js';
import { reportedStatuses, startCheck, type CheckedUpdate } from './invariants.js';

// The hub emulator restarted 10 times during one update: while the bundle downloads, while the
// board reboots into the trial, during the trial (and, for a failing update, while it falls back).
// Every restart is a real outage (both ports closed, every link dropped; state kept on disk, as
// IoT Hub keeps it). Whatever the outcome, it must reach the twin, and the twin's history (every
// patch the hub accepted) must be a path of the workflow with nothing from another update
// (invariants.ts). Restarts are placed by what the device shows, never by the clock.

/** Large and slow enough that the download outlives four restarts on a loaded machine. */
const IMAGE = { rootfsBytes: 2 * 1024 * 1024, bootBytes: 64 * 1024 };
const DOWNLOAD_BYTES_PER_SECOND = 80 * 1024;
const RESTARTS = 10;

let world: World;
beforeAll(async () => {
  world = await World.create();
}, 60_000);
afterAll(() => world?.close());

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface RestartStep {
  /** What the step waits for before stopping the hub (a reason, for the failure message). */
  when: string;
  gate: () => Promise<boolean>;
  /** Keeps the hub down until this resolves. */
  hold: () => Promise<unknown>;
}

/** What the device says while the hub is down: its status (or the end it reached), and the board's boot. */
async function deviceNow(pi: SimulatedPi): Promise<string> {
  const [status, sim] = await Promise.all([pi.status(), pi.sim()]);
  const update = status.update ? status.update.status : `ended ${status.lastResult?.status}`;
  const board = sim.daemonPid === null ? 'board rebooting' : `slot ${sim.bootedSlot}${sim.trial ? ' trial' : ''}`;
  return `${update} (${board})`;
}

/** Runs the steps: each waits for its gate, stops the hub, notes the device, holds, restarts the hub. */
async function restartHub(pi: SimulatedPi, steps: RestartStep[]): Promise<string[]> {
  const seen: string[] = [];
  for (const [i, step] of steps.entries()) {
    await waitFor(`restart ${i + 1} (${step.when})`, step.gate, 60_000);
    await world.stopHub();
    try {
      seen.push(`${i + 1}. ${step.when}: ${await deviceNow(pi)}`);
      await step.hold();
    } finally {
      await world.restartHub();
    }
  }
  return seen;
}

const connected = (pi: SimulatedPi) => world.hub.connectedDevices().includes(pi.deviceId);

/**
 * Restarts while the device is online and downloading: each one an outage it sees and recovers
 * from. Only before three quarters of the download, so the download is still running when the
 * device is asked what it does (the twin's progress lags the device by up to a second).
 */
const whileDownloading = (pi: SimulatedPi, count: number): RestartStep[] =>
  Array.from({ length: count }, () => ({
    when: 'online, downloading',
    gate: async () => {
      if (!connected(pi)) return false;
      const fu = (await world.reported(pi.deviceId)).iothubDM?.firmwareUpdate;
      return fu?.status === 'downloading' && (fu.progress?.percent ?? 0) < 75;
    },
    hold: () => sleep(200),
  }));

/** Short outages back to back, whatever the device is doing (it is still connecting from the last one). */
const flaps = (count: number): RestartStep[] =>
  Array.from({ length: count }, () => ({ when: 'right after the last restart', gate: async () => true, hold: () => sleep(300) }));

/**
 * The ten restarts of an update that reboots: four while it downloads; one from before the trial
 * reboot until `until` (the hub away across the reboot); four short ones back to back; one more
 * once the device is online again.
 */
function acrossTheReboot(pi: SimulatedPi, what: string, until: () => Promise<boolean>): RestartStep[] {
  return [
    ...whileDownloading(pi, 4),
    { when: 'online, before the trial reboot', gate: async () => connected(pi), hold: () => waitFor(what, until, 90_000) },
    ...flaps(4),
    { when: 'online again', gate: async () => connected(pi), hold: () => sleep(200) },
  ];
}

/** One update with the steps' restarts; returns the checked update and where the restarts fell. */
async function updateThroughRestarts(pi: SimulatedPi, bundleName: string, version: string, steps: RestartStep[], corruptAt?: number) {
  expect(steps).toHaveLength(RESTARTS);
  // A corrupted one is format 1: the file ends with its last chunk, so a share of the file is a place
  // in the chunks (in format 2 the unit store follows them, which a full install does not read).
  const bundle = await world.bundle(bundleName, { version, ...IMAGE, ...(corruptAt === undefined ? {} : { formatVersion: 1 }) });
  if (corruptAt !== undefined) {
    // One payload byte flipped: the chunk that holds it fails its signed hash when it arrives.
    const bytes = await readFile(bundle.path);
    const at = Math.floor(bytes.length * corruptAt);
    bytes[at] ^= 0xff;
    await writeFile(bundle.path, bytes);
  }
  const check = await startCheck(world, pi, bundle);
  world.files.faults.bytesPerSecond = DOWNLOAD_BYTES_PER_SECOND;
  let seen: string[];
  let done: CheckedUpdate;
  try {
    const answer = await world.invoke(pi.deviceId, 'firmwareUpdate', { fwPackageUri: bundle.url });
    expect(answer.status).toBe(200);
    const updateId = answer.payload.updateId as string;
    seen = await restartHub(pi, steps);
    done = await check.finish(updateId);
  } finally {
    world.files.faults.bytesPerSecond = undefined;
  }
  const { statuses } = reportedStatuses(done.observation.patches, done.observation.updateId);
  console.log(`${pi.deviceId}: ${RESTARTS} hub restarts →  ${done.final}${done.errorCode ? ` (${done.errorCode})` : ''}\n  ${seen.join('\n  ')}\n  twin history: ${statuses.join(' → ')}`);
  return { done, seen };
}

describe('hub restarts during an update', () => {
  it('10 restarts (download, reboot, trial): applyComplete reaches the twin, and its history is a path of the workflow', async () => {
    const pi = await world.pi('hub-restarts-ok', { bootRecord: true, daemonConfig: { trialTimeoutSeconds: 90 } });
    // Down before the trial reboot, up only once the trial's daemon runs: it starts offline.
    const steps = acrossTheReboot(pi, 'the trial boot', async () => {
      const sim = await pi.sim();
      return sim.trial && sim.daemonPid !== null;
    });
    const { done, seen } = await updateThroughRestarts(pi, 'fw-restarts-ok', '2.0.0', steps);
    expect(done.violations).toEqual([]);
    expect(done.final).toBe('applyComplete');
    // The restarts fell where they were meant to: the download, and the trial boot (which began with the hub away).
    expect(seen.slice(0, 4).every((s) => s.includes(': downloading'))).toBe(true);
    // The hub went down before the trial reboot (slot A still running) and the trial's daemon started without it.
    expect(seen[4]).toMatch(/: (downloading|downloadComplete|applying) \(slot A\)$/);
    expect(seen[5]).toMatch(/^6\. .*: applying \(slot B trial\)$/);
  }, 300_000);

  it('10 restarts while a trial hangs and the board falls back: applyFailed reached offline arrives when the hub is back', async () => {
    const pi = await world.pi('hub-restarts-fallback', { bootRecord: true, failTrial: true });
    // The hub stays away through the hung trial, the watchdog reset and the fall-back: the end is reached offline.
    const steps = acrossTheReboot(pi, 'the end, reached offline', async () => {
      const sim = await pi.sim();
      // powered on, the hung trial, the watchdog's reset: only then ask piota status (a process).
      return sim.bootCount >= 3 && sim.daemonPid !== null && (await pi.status()).lastResult?.status === 'applyFailed';
    });
    const { done, seen } = await updateThroughRestarts(pi, 'fw-restarts-fallback', '2.0.0', steps);
    expect(done.violations).toEqual([]);
    expect(done.final).toBe('applyFailed');
    expect(done.errorCode).toBe('trialFailed');
    expect(seen.slice(0, 4).every((s) => s.includes(': downloading'))).toBe(true);
    expect(seen[4]).toMatch(/: (downloading|downloadComplete|applying) \(slot A\)$/);
    expect(seen[5]).toMatch(/: ended applyFailed \(slot A\)$/);
    // The trial boot really hung and the watchdog reset the board, all while the hub was down.
    expect(done.observation.boots.map((b) => `${b.slot}${b.trial ? ' trial' : ''} ${b.cause}`)).toEqual(['B trial tryboot', 'A watchdog']);
  }, 300_000);

  it('10 restarts around a download that fails its hash: downloadFailed reaches the twin, nothing was booted', async () => {
    const pi = await world.pi('hub-restarts-corrupt', { bootRecord: true });
    const steps: RestartStep[] = [
      ...whileDownloading(pi, 3),
      ...flaps(3),
      // Then whatever the device does (the corrupt chunk arrives at 70 % of the download).
      ...Array.from({ length: 4 }, () => ({ when: 'online', gate: async () => connected(pi), hold: () => sleep(200) })),
    ];
    const { done, seen } = await updateThroughRestarts(pi, 'fw-restarts-corrupt', '2.0.0', steps, 0.7);
    expect(done.violations).toEqual([]);
    expect(done.final).toBe('downloadFailed');
    expect(done.errorCode).toBe('hashMismatch');
    expect(seen.filter((s) => s.includes(': downloading')).length).toBeGreaterThanOrEqual(3);
    expect(done.observation.boots).toEqual([]);
  }, 300_000);
});
