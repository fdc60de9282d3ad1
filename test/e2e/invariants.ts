import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { waitFor, type BootRecord, type ReportedPatch, type SimJson, type SimulatedPi, type StatusJson, type World } from './world.js';

// The outcome checker for updates interrupted by power cuts and hub restarts. It judges an update
// only by what can be seen from outside the daemon: the twin (every patch the hub accepted), the
// simulated firmware (sim.json, autoboot.txt, its boot record), the slot files' bytes and
// `piota status --json`. So it holds whatever the daemon's internal phases are called. Each check
// returns the list of violations (empty = consistent), so a failure names all of them at once.

export type Slot = 'A' | 'B';
export type Status = 'waiting' | 'downloading' | 'downloadComplete' | 'applying' | 'applyComplete' | 'applyFailed' | 'downloadFailed';
export const TERMINAL: readonly string[] = ['applyComplete', 'applyFailed', 'downloadFailed'];

/** sha256 of each whole partition file of a slot. */
export interface SlotContent {
  boot: string;
  rootfs: string;
}

const other = (slot: Slot): Slot => (slot === 'A' ? 'B' : 'A');

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** What each slot holds now, hashed from the slot files. */
export async function slotContents(sim: SimJson): Promise<Record<Slot, SlotContent>> {
  const of = async (s: Slot) => ({ boot: await sha256File(sim.slots[s].boot), rootfs: await sha256File(sim.slots[s].rootfs) });
  return { A: await of('A'), B: await of('B') };
}

/**
 * What a slot holds once an image is written and verified there: the image, then the rest of the
 * partition as it was. The soak writes images of one size into never-longer-written slots, so the
 * rest is zeros (sparse); the slot file's size gives its length.
 */
export async function verifiedContent(sim: SimJson, slot: Slot, image: { boot: Buffer; rootfs: Buffer }): Promise<SlotContent> {
  const padded = async (path: string, bytes: Buffer) => {
    const size = (await stat(path)).size;
    if (bytes.length > size) throw new Error(`${path}: an image of ${bytes.length} bytes cannot fit a ${size}-byte slot`);
    return createHash('sha256').update(bytes).update(Buffer.alloc(size - bytes.length)).digest('hex');
  };
  return { boot: await padded(sim.slots[slot].boot, image.boot), rootfs: await padded(sim.slots[slot].rootfs, image.rootfs) };
}

/** The partition autoboot.txt's `[all]` section boots: the committed slot, as the firmware sees it. */
export async function committedPartition(sim: SimJson): Promise<number | undefined> {
  const text = await readFile(sim.autoboot, 'utf8');
  const m = /\[all\][^[]*?boot_partition=(\d+)/.exec(text);
  return m ? Number(m[1]) : undefined;
}

const RANK: Record<Status, number> = {
  waiting: 0, downloading: 1, downloadComplete: 2, applying: 3, applyComplete: 4, applyFailed: 4, downloadFailed: 4,
};

/**
 * Whether the statuses one update showed on the twin, in order, are a path of the workflow:
 * waiting → downloading → downloadComplete → applying → applyComplete | applyFailed, or a prefix
 * of it ending in downloadFailed. A status may repeat back to back (the daemon re-reports its
 * whole picture at every start and reconnect) and may be skipped (while the hub is away only the
 * newest picture is sent), but never go back, never come after the end, and downloadFailed never
 * follows applying.
 */
export function statusPathViolations(statuses: readonly string[]): string[] {
  const problems: string[] = [];
  let prev: Status | undefined;
  for (const s of statuses) {
    if (!(s in RANK)) {
      problems.push(`'${s}' is not a status of the workflow`);
      continue;
    }
    const status = s as Status;
    if (prev === status) continue;
    if (prev !== undefined && TERMINAL.includes(prev)) problems.push(`'${status}' after the update ended with '${prev}'`);
    else if (prev !== undefined && RANK[status] <= RANK[prev]) problems.push(`'${status}' after '${prev}' goes back`);
    else if (status === 'downloadFailed' && prev === 'applying') problems.push(`'downloadFailed' after 'applying'`);
    prev = status;
  }
  return problems;
}

/** The statuses of `updateId` in the patches, in order; and the updateIds the patches named, collapsed. */
export function reportedStatuses(patches: readonly ReportedPatch[], updateId: string): { statuses: string[]; updateIds: (string | null)[] } {
  const statuses: string[] = [];
  const updateIds: (string | null)[] = [];
  for (const { patch } of patches) {
    const fu = patch.iothubDM?.firmwareUpdate;
    if (fu === undefined) continue;
    const id = (fu?.updateId ?? null) as string | null;
    if (updateIds[updateIds.length - 1] !== id) updateIds.push(id);
    if (id === updateId && typeof fu.status === 'string') statuses.push(fu.status);
  }
  return { statuses, updateIds };
}

/** Everything observed about one update, all from outside the daemon. */
export interface UpdateObservation {
  updateId: string;
  /** The bundle's version and what the target slot holds once that bundle is verified there. */
  version: string;
  image: SlotContent;
  /** Before the update was triggered. */
  before: { status: StatusJson; content: Record<Slot, SlotContent> };
  /** The update that ended before this one (its terminal patches may be re-sent before ours). */
  previous?: { updateId: string; status: string };
  /** After the twin showed the end and the device settled. */
  after: { status: StatusJson; sim: SimJson; content: Record<Slot, SlotContent>; committedPartition: number | undefined };
  /** The twin's reported properties at the end. */
  twin: Record<string, any>;
  /** The boots between the trigger and the end, from the simulator's record. */
  boots: readonly BootRecord[];
  /** The patches the hub accepted between the trigger and the end. */
  patches: readonly ReportedPatch[];
}

const same = (a: SlotContent, b: SlotContent) => a.boot === b.boot && a.rootfs === b.rootfs;

/** The consistency rules of an ended update; returns every rule it breaks. */
export function updateViolations(o: UpdateObservation): string[] {
  const problems: string[] = [];
  const fail = (m: string) => problems.push(m);
  const fu = o.twin.iothubDM?.firmwareUpdate ?? {};
  const final = fu.status as string;
  const { status, sim } = o.after;
  const oldSlot = o.before.status.bootedSlot;
  const target = other(oldSlot);
  const partitions = sim.partitions ?? { A: 2, B: 3 };

  // The twin, the state and the board agree.
  if (fu.updateId !== o.updateId) fail(`the twin names update ${fu.updateId}, not ${o.updateId}`);
  if (!TERMINAL.includes(final)) fail(`the twin's final status is '${final}', not an end`);
  if (status.update !== null) fail(`piota status still has an update in progress (${status.update.status})`);
  if (status.lastResult?.updateId !== o.updateId) fail(`piota status's last result is update ${status.lastResult?.updateId}`);
  else if (status.lastResult.status !== final) fail(`the twin says '${final}' but piota status says '${status.lastResult.status}'`);
  if (o.twin.iothubDM?.firmwareVersion !== status.runningVersion) fail(`the twin's firmwareVersion ${o.twin.iothubDM?.firmwareVersion} is not the running version ${status.runningVersion}`);
  if (o.twin.piota?.bootedSlot !== status.bootedSlot || o.twin.piota?.committedSlot !== status.committedSlot) {
    fail(`the twin's slots (booted ${o.twin.piota?.bootedSlot}, committed ${o.twin.piota?.committedSlot}) differ from the device's (${status.bootedSlot}, ${status.committedSlot})`);
  }
  if (sim.bootedSlot !== status.bootedSlot) fail(`the board booted ${sim.bootedSlot} but piota status says ${status.bootedSlot}`);
  if (sim.trial !== status.trialBoot) fail(`the board's trial flag is ${sim.trial} but piota status says ${status.trialBoot}`);
  // A committed trial boot stays a trial boot until the next reboot: success may end in one, and so may
  // a failure that never rebooted, on a board that was already in that (committed) trial boot before.
  const stillThePreviousTrial = o.before.status.trialBoot && o.before.status.bootedSlot === status.bootedSlot && status.bootedSlot === status.committedSlot;
  if (sim.trial && final !== 'applyComplete' && !stillThePreviousTrial) fail(`${final}, yet the board runs a trial boot of slot ${sim.bootedSlot}`);
  if (o.after.committedPartition !== partitions[status.committedSlot]) {
    fail(`autoboot.txt [all] boots partition ${o.after.committedPartition}, not the committed slot ${status.committedSlot}'s`);
  }
  if (status.bootedSlot !== status.committedSlot) fail(`booted ${status.bootedSlot} but committed ${status.committedSlot}`);

  // The outcome matches the slots.
  if (final === 'applyComplete') {
    if (status.bootedSlot !== target) fail(`applyComplete with slot ${status.bootedSlot} booted, not the new slot ${target}`);
    if (!same(o.after.content[target], o.image)) fail(`applyComplete, but slot ${target} does not hold the image of ${o.version}`);
    if (status.runningVersion !== o.version) fail(`applyComplete, but the running version is ${status.runningVersion}, not ${o.version}`);
  } else if (TERMINAL.includes(final)) {
    if (status.bootedSlot !== oldSlot) fail(`${final} with slot ${status.bootedSlot} booted, not the old slot ${oldSlot}`);
    if (status.runningVersion !== o.before.status.runningVersion) fail(`${final}, but the running version changed to ${status.runningVersion}`);
    if (!fu.error?.code) fail(`${final} without an error code`);
  }
  // The running slot is never written.
  if (!same(o.after.content[oldSlot], o.before.content[oldSlot])) fail(`the old slot ${oldSlot} was written during the update`);

  // Never a boot of unverified bytes.
  for (const b of o.boots) {
    const where = `boot ${b.boot} (${b.cause}, slot ${b.slot}${b.trial ? ', trial' : ''})`;
    if (b.slot === oldSlot) {
      if (b.trial) fail(`${where}: a trial boot of the old slot`);
      if (!same(b.sha256, o.before.content[oldSlot])) fail(`${where}: the old slot's bytes had changed`);
    } else if (!same(b.sha256, o.image)) {
      fail(`${where}: booted bytes that are not the verified image of ${o.version}`);
    } else if (final === 'downloadFailed') {
      fail(`${where}: the new slot booted, yet the update ended downloadFailed`);
    }
  }
  const last = o.boots[o.boots.length - 1];
  if (last && last.slot !== sim.bootedSlot) fail(`the last recorded boot is of slot ${last.slot}, but sim.json says ${sim.bootedSlot}`);

  // Nothing reported that did not happen.
  const { statuses, updateIds } = reportedStatuses(o.patches, o.updateId);
  for (const p of statusPathViolations(statuses)) fail(`twin history ${statuses.join(' → ')}: ${p}`);
  if (statuses[statuses.length - 1] !== final) fail(`the last reported status was '${statuses[statuses.length - 1]}', not '${final}'`);
  // Before our first patch, the picture from before the trigger may be re-sent (no update, or the
  // previous one's end); from then on, only ours.
  const first = updateIds.indexOf(o.updateId);
  updateIds.forEach((id, i) => {
    if (id === o.updateId) return;
    if (first >= 0 && i > first) fail(`update ${id} was reported after update ${o.updateId} started`);
    else if (id !== null && id !== o.previous?.updateId) fail(`a patch named update ${id}, which was never triggered here`);
  });
  for (const { patch } of o.patches) {
    const p = patch.iothubDM?.firmwareUpdate;
    if (o.previous && p?.updateId === o.previous.updateId && p.status !== o.previous.status) {
      fail(`update ${o.previous.updateId} was re-reported as '${p.status}' though it ended '${o.previous.status}'`);
    }
  }
  const bootedTarget = o.boots.some((b) => b.slot === target);
  for (const { patch } of o.patches) {
    if (patch.piota?.bootedSlot === target && !bootedTarget) fail(`the twin showed slot ${target} booted, but the board never booted it`);
    if (patch.iothubDM?.firmwareVersion === o.version && !bootedTarget && o.version !== o.before.status.runningVersion) {
      fail(`the twin showed version ${o.version} running, but the board never booted slot ${target}`);
    }
  }
  return problems;
}

/** What a test must keep between taking the "before" picture and checking the end. */
export interface PendingCheck {
  version: string;
  /** Waits for the end of `updateId` on the twin, lets the device settle, and checks the whole update. */
  finish(updateId: string): Promise<CheckedUpdate>;
}

export interface CheckedUpdate {
  observation: UpdateObservation;
  final: string;
  errorCode: string | undefined;
  violations: string[];
  /** ms from finish() being called to the end showing on the twin. */
  endMs: number;
}

/**
 * Takes the picture before an update of `pi` to the bundle (version and image bytes) is triggered:
 * `piota status`, both slots' bytes, where the hub's patch and the boot records stand. The update
 * checked before on this Pi (if any) is passed so that its end, re-sent before the new update's
 * first patch, is accepted; its final `piota status` stands for the new one's "before" (nothing
 * runs on an idle device in between). Needs a Pi started with `bootRecord: true`.
 */
export async function startCheck(
  world: World,
  pi: SimulatedPi,
  bundle: { version: string; rootfs: Buffer; boot: Buffer },
  previousCheck?: CheckedUpdate,
): Promise<PendingCheck> {
  const previous = previousCheck && { updateId: previousCheck.observation.updateId, status: previousCheck.final };
  const status = previousCheck?.observation.after.status ?? (await pi.status());
  const sim = await pi.sim();
  const before = { status, content: await slotContents(sim) };
  const image = await verifiedContent(sim, status.bootedSlot === 'A' ? 'B' : 'A', bundle);
  const patchesFrom = world.reportedPatches(pi.deviceId).length;
  const bootsFrom = (await pi.bootRecords()).length;
  return {
    version: bundle.version,
    async finish(updateId) {
      const t0 = Date.now();
      await world.waitForUpdate(pi.deviceId, updateId, (fu) => TERMINAL.includes(fu.status), 120_000);
      const endMs = Date.now() - t0;
      const { twin, after } = await settle(world, pi, updateId);
      const observation: UpdateObservation = {
        updateId, version: bundle.version, image, before, previous, twin, after,
        boots: (await pi.bootRecords()).slice(bootsFrom),
        patches: world.reportedPatches(pi.deviceId).slice(patchesFrom),
      };
      const fu = twin.iothubDM?.firmwareUpdate;
      // A failure's message, for whoever reads a soak's log: the code alone does not say where.
      if (fu?.error) console.log(`${pi.deviceId} ${updateId}: ${fu.status} ${fu.error.code}: ${fu.error.message}`);
      return { observation, final: fu?.status, errorCode: fu?.error?.code, violations: updateViolations(observation), endMs };
    },
  };
}

/**
 * After the twin showed the end: waits for the device to settle (no update in progress, the board up
 * with a daemon, the twin caught up with the device). A device that never settles is not an error
 * here: the checker then names what disagrees.
 */
async function settle(world: World, pi: SimulatedPi, updateId: string): Promise<{ twin: Record<string, any>; after: UpdateObservation['after'] }> {
  let last: { twin: Record<string, any>; after: UpdateObservation['after'] } | undefined;
  const read = async () => {
    const sim = await pi.sim();
    const status = await pi.status();
    const twin = await world.reported(pi.deviceId);
    last = { twin, after: { status, sim, content: await slotContents(sim), committedPartition: await committedPartition(sim) } };
    return last;
  };
  // The cheap signs first (the board up, the twin naming the booted slot), then piota status (a process).
  await waitFor('the device and the twin to agree', async () => {
    const sim = await pi.sim();
    if (sim.daemonPid === null) return false;
    const twin = await world.reported(pi.deviceId);
    if (twin.piota?.bootedSlot !== sim.bootedSlot || !TERMINAL.includes(twin.iothubDM?.firmwareUpdate?.status)) return false;
    const { twin: t, after } = await read();
    const { status } = after;
    return (
      status.update === null &&
      status.lastResult?.updateId === updateId &&
      t.iothubDM?.firmwareUpdate?.status === status.lastResult.status &&
      t.iothubDM?.firmwareVersion === status.runningVersion &&
      t.piota?.bootedSlot === status.bootedSlot
    );
  }, 60_000).catch(() => read().catch(() => undefined));
  if (!last) throw new Error(`${pi.deviceId}: could not read the device after update ${updateId}`);
  return last;
}
