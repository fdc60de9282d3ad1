import type { Slot } from '../boot/backend.js';
import { isPhase, reportedStatus, type Phase, type ReportedStatus, type UpdateTimestamp } from './workflow/spec.js';

export type { Phase, ReportedStatus } from './workflow/spec.js';
export { isTerminal, reportedStatus } from './workflow/spec.js';
/**
 * An update's error as stored: a code from the closed list (workflow/update-errors.ts) when this agent
 * wrote it; a newer agent's code is kept as it was written, so the twin shows what that agent decided.
 */
export interface StoredUpdateError {
  code: string;
  message: string;
}

/** What the verified bundle header said, kept so a restart knows what to expect. */
export interface BundleSummary {
  version: string;
  securityVersion: number;
  headerLength: number;
  totalBytes: number;
  chunkCount: number;
  payloads: { name: string; imageSize: number; imageSha256: string }[];
}

export interface UpdateRecord {
  updateId: string;
  fwPackageUri: string;
  /** sha256 of the whole file at the URI, when the caller pinned it. */
  pinnedSha256: string | null;
  /** The version the caller expects the bundle to carry. */
  expectedVersion: string | null;
  /** The caller asked to skip the maintenance window. */
  applyNow: boolean;
  phase: Phase;
  /**
   * The phase's reported status, written beside it so that an older agent that does not know the
   * phase can still tell how far the update got (docs/update-workflow.md, "State compatibility").
   */
  status?: ReportedStatus;
  fromSlot: Slot;
  targetSlot: Slot;
  bundle: BundleSummary | null;
  /** Chunks [0, nextChunk) are verified, written and synced to the target slot. */
  nextChunk: number;
  bytesDownloaded: number;
  /**
   * How the bundle is being fetched: `full` (every chunk) or `adaptive` (only the blocks the slots
   * lack, docs/adaptive-updates.md). Optional: state written before adaptive updates has none (full).
   */
  method?: 'full' | 'adaptive';
  /** Bytes received over the network for this update so far (adaptive: index and fetched units). */
  bytesFetched?: number;
  /** Image bytes taken from the slots instead of the network. */
  bytesReused?: number;
  error: StoredUpdateError | null;
  times: { startedWaitingTime: string } & Record<UpdateTimestamp, string | null>;
  /** Wall-clock ms when the trial boot was first seen; the trial deadline counts from here. */
  trialStartedAt: number | null;
  /** How often each phase was entered: the loop guard's count. */
  entries: Partial<Record<Phase, number>>;
}

export interface SlotRecord {
  version: string;
  sha256: string;
  securityVersion: number;
  installedAt: string;
}

/** A damaged state file that the daemon recovered from at start-up (reported as `piota.stateRecovery`). */
export interface StateRecovery {
  at: string;
  /** What was wrong with the file (names the file and the problem). */
  reason: string;
  /** `previous`: the previous good generation was used; `rebuilt`: nothing usable was left. */
  restoredFrom: 'previous' | 'rebuilt';
  /** Where the damaged file was moved, for a person to look at. */
  movedTo: string | null;
}

export interface DeviceState {
  slots: Record<Slot, SlotRecord | null>;
  update: UpdateRecord | null;
  /** The plausible-clock floor (ms): the newest time with evidence behind it (see clock-floor.ts). */
  newestTimestamp: number;
  /** The last recovery from a damaged state file, if any. */
  recovery?: StateRecovery | null;
}

export function emptyState(): DeviceState {
  return { slots: { A: null, B: null }, update: null, newestTimestamp: 0, recovery: null };
}

export interface UpdateProgress {
  /** How far through the bundle the install is (adaptive: the bundle bytes whose content is written). */
  bytes: number;
  totalBytes: number | null;
  percent: number | null;
  /** Bytes actually received over the network. */
  bytesFetched: number;
  /** Image bytes reused from the slots (adaptive only). */
  bytesReused: number;
  /** `full` or `adaptive`; null before the bundle's header was read. */
  method: 'full' | 'adaptive' | null;
}

/** How far the download got, in the reported-properties shape. */
export function updateProgress(u: UpdateRecord): UpdateProgress {
  const total = u.bundle?.totalBytes ?? null;
  return {
    bytes: u.bytesDownloaded,
    totalBytes: total,
    percent: total ? Math.min(100, Math.floor((u.bytesDownloaded / total) * 100)) : null,
    bytesFetched: u.bytesFetched ?? u.bytesDownloaded,
    bytesReused: u.bytesReused ?? 0,
    method: u.method ?? (u.bundle ? 'full' : null),
  };
}

/** The version the update installs: the bundle's once its header was read, else what the caller named. */
export function targetVersion(u: UpdateRecord): string | null {
  return u.bundle?.version ?? u.expectedVersion;
}

/** The update as written to disk: its status beside its phase, for older readers. */
export function withStatus(state: DeviceState): DeviceState {
  if (state.update) state.update.status = reportedStatus(state.update.phase);
  return state;
}

/**
 * Checks the shape of a state file's data, from this schema or any other, and throws naming the
 * first bad field. Fields it does not know are kept as they are (a newer agent wrote them). A phase
 * it does not know is mapped to a safe one by the status written beside it; see mapUnknownPhase.
 */
export function validateDeviceState(data: unknown): DeviceState {
  const d = object(data, 'the state');
  const slots = object(d.slots, 'slots');
  for (const s of ['A', 'B'] as const) {
    const r = slots[s];
    if (r === null) continue;
    const rec = object(r, `slots.${s}`);
    if (typeof rec.version !== 'string' || typeof rec.sha256 !== 'string' || typeof rec.securityVersion !== 'number') {
      throw new Error(`slots.${s}: expected {version, sha256, securityVersion, installedAt} or null`);
    }
  }
  if (typeof d.newestTimestamp !== 'number' || !Number.isFinite(d.newestTimestamp)) throw new Error('newestTimestamp: expected a number');
  if (d.update !== null && d.update !== undefined) validateUpdate(object(d.update, 'update'));
  else d.update = null;
  return d as unknown as DeviceState;
}

function validateUpdate(u: Record<string, unknown>): void {
  if (typeof u.updateId !== 'string' || typeof u.fwPackageUri !== 'string') throw new Error('update: updateId and fwPackageUri must be strings');
  if ((u.fromSlot !== 'A' && u.fromSlot !== 'B') || (u.targetSlot !== 'A' && u.targetSlot !== 'B') || u.fromSlot === u.targetSlot) {
    throw new Error('update: fromSlot/targetSlot must be A and B');
  }
  if (!Number.isInteger(u.nextChunk) || (u.nextChunk as number) < 0) throw new Error('update.nextChunk: expected a whole number');
  if (typeof u.bytesDownloaded !== 'number') throw new Error('update.bytesDownloaded: expected a number');
  if (u.method !== undefined && u.method !== 'full' && u.method !== 'adaptive') delete u.method; // a newer agent's method: shown as unknown
  for (const f of ['bytesFetched', 'bytesReused'] as const) {
    if (u[f] !== undefined && typeof u[f] !== 'number') throw new Error(`update.${f}: expected a number`);
  }
  const times = object(u.times, 'update.times');
  if (typeof times.startedWaitingTime !== 'string') throw new Error('update.times.startedWaitingTime: expected a string');
  object(u.entries, 'update.entries');
  if (u.error !== null && u.error !== undefined) {
    const e = object(u.error, 'update.error');
    if (typeof e.code !== 'string' || typeof e.message !== 'string') throw new Error('update.error: expected {code, message}');
  } else u.error = null;
  if (!isPhase(u.phase)) mapUnknownPhase(u);
}

/**
 * A phase this agent does not know was written by a newer one (typically: the newer release's trial
 * failed and this, the old slot's agent, booted again). The update is never resumed blindly; the
 * status written beside the phase says how far it got:
 * - a final status keeps its outcome;
 * - before applying (`waiting`, `downloading`, `downloadComplete`): ended `downloadFailed`; the boot
 *   configuration was not touched yet, and the runner points `[tryboot]` back at the committed slot;
 * - `applying`, or no status: `checkingBoot`, which looks at the booted slot like after any reboot:
 *   the new slot on trial goes on with the trial, anything else ends `applyFailed`.
 */
function mapUnknownPhase(u: Record<string, unknown>): void {
  const unknown = JSON.stringify(u.phase);
  const status = u.status;
  const ended = (phase: Phase, keepError: boolean) => {
    u.phase = phase;
    if (!keepError || u.error === null) u.error = { code: 'unknownPhase', message: `the update was left in phase ${unknown} by a newer piota; ended as ${phase}` };
  };
  if (status === 'applyComplete' || status === 'applyFailed' || status === 'downloadFailed') ended(status, true);
  else if (status === 'waiting' || status === 'downloading' || status === 'downloadComplete') ended('downloadFailed', false);
  else u.phase = 'checkingBoot';
}

function object(v: unknown, field: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${field}: expected an object`);
  return v as Record<string, unknown>;
}
