import { join } from 'node:path';
import { readStateFile, writeStateFile } from '../os/state-file.js';
import type { SlotName } from './config.js';

/**
 * The workflow's phases. Each maps to one reported status (see reportedStatus); several internal
 * phases are all `applying` on the twin.
 */
export type Phase =
  | 'waiting'
  | 'downloading'
  | 'downloadComplete'
  | 'verifying'
  | 'rebooting'
  | 'trial'
  | 'committing'
  | 'rollingBack'
  | 'applyComplete'
  | 'applyFailed'
  | 'downloadFailed';

export const TERMINAL_PHASES: readonly Phase[] = ['applyComplete', 'applyFailed', 'downloadFailed'];

export type ReportedStatus = 'waiting' | 'downloading' | 'downloadComplete' | 'downloadFailed' | 'applying' | 'applyComplete' | 'applyFailed';

export function reportedStatus(phase: Phase): ReportedStatus {
  switch (phase) {
    case 'waiting':
    case 'downloading':
    case 'downloadComplete':
    case 'applyComplete':
    case 'applyFailed':
    case 'downloadFailed':
      return phase;
    case 'rollingBack':
      return 'applyFailed';
    default:
      return 'applying';
  }
}

export interface UpdateError {
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
  fromSlot: SlotName;
  targetSlot: SlotName;
  bundle: BundleSummary | null;
  /** Chunks [0, nextChunk) are verified, written and synced to the target slot. */
  nextChunk: number;
  bytesDownloaded: number;
  error: UpdateError | null;
  times: {
    startedWaitingTime: string;
    startedDownloadingTime: string | null;
    downloadCompleteTime: string | null;
    startedApplyingImage: string | null;
    lastFirmwareUpdate: string | null;
  };
  /** Wall-clock ms when the trial boot was first seen; the trial deadline counts from here. */
  trialStartedAt: number | null;
  /** How often each phase was entered: a guard against reboot loops. */
  entries: Partial<Record<Phase, number>>;
}

export interface SlotRecord {
  version: string;
  sha256: string;
  securityVersion: number;
  installedAt: string;
}

export interface DeviceState {
  slots: Record<SlotName, SlotRecord | null>;
  update: UpdateRecord | null;
  /** The newest wall-clock time this device has persisted: a clock earlier than this is implausible. */
  newestTimestamp: number;
}

export const STATE_SCHEMA = 1;

export function emptyState(): DeviceState {
  return { slots: { A: null, B: null }, update: null, newestTimestamp: 0 };
}

/** How far the download got, in the reported-properties shape. */
export function updateProgress(u: UpdateRecord): { bytes: number; totalBytes: number | null; percent: number | null } {
  const total = u.bundle?.totalBytes ?? null;
  return { bytes: u.bytesDownloaded, totalBytes: total, percent: total ? Math.min(100, Math.floor((u.bytesDownloaded / total) * 100)) : null };
}

/** The version the update installs: the bundle's once its header was read, else what the caller named. */
export function targetVersion(u: UpdateRecord): string | null {
  return u.bundle?.version ?? u.expectedVersion;
}

export function isTerminal(phase: Phase): boolean {
  return TERMINAL_PHASES.includes(phase);
}

/** The device's state file in the state directory: the single source of truth after a restart. */
export class StateStore {
  readonly path: string;
  private queue: Promise<void> = Promise.resolve();

  constructor(stateDir: string) {
    this.path = join(stateDir, 'state.json');
  }

  async load(): Promise<DeviceState> {
    return (await readStateFile(this.path, STATE_SCHEMA, validateDeviceState)) ?? emptyState();
  }

  /** Persists a snapshot taken now; saves land on disk in the order they were asked for. */
  save(state: DeviceState): Promise<void> {
    state.newestTimestamp = Math.max(state.newestTimestamp, Date.now());
    const snapshot = structuredClone(state);
    const write = this.queue.then(() => writeStateFile(this.path, STATE_SCHEMA, snapshot, { mode: 0o600, mkdirs: true }));
    this.queue = write.catch(() => undefined);
    return write;
  }
}

const PHASES: readonly Phase[] = [
  'waiting', 'downloading', 'downloadComplete', 'verifying', 'rebooting', 'trial', 'committing',
  'rollingBack', 'applyComplete', 'applyFailed', 'downloadFailed',
];

/** Checks the shape of a state file's data; throws naming the first bad field. */
export function validateDeviceState(data: unknown): DeviceState {
  const d = data as DeviceState;
  if (typeof d !== 'object' || d === null) throw new Error('expected an object');
  if (typeof d.newestTimestamp !== 'number') throw new Error('newestTimestamp: expected a number');
  if (typeof d.slots !== 'object' || d.slots === null) throw new Error('slots: expected an object');
  for (const s of ['A', 'B'] as const) {
    const r = d.slots[s];
    if (r === null) continue;
    if (typeof r !== 'object' || typeof r.version !== 'string' || typeof r.sha256 !== 'string' || typeof r.securityVersion !== 'number') {
      throw new Error(`slots.${s}: expected {version, sha256, securityVersion, installedAt} or null`);
    }
  }
  if (d.update !== null) {
    const u = d.update;
    if (typeof u !== 'object') throw new Error('update: expected an object or null');
    if (typeof u.updateId !== 'string' || typeof u.fwPackageUri !== 'string') throw new Error('update: updateId and fwPackageUri must be strings');
    if (!PHASES.includes(u.phase)) throw new Error(`update.phase: unknown phase ${JSON.stringify(u.phase)}`);
    if ((u.fromSlot !== 'A' && u.fromSlot !== 'B') || (u.targetSlot !== 'A' && u.targetSlot !== 'B')) throw new Error('update: fromSlot/targetSlot must be A or B');
    if (!Number.isInteger(u.nextChunk) || u.nextChunk < 0) throw new Error('update.nextChunk: expected a whole number');
    if (typeof u.times !== 'object' || u.times === null) throw new Error('update.times: expected an object');
    if (typeof u.entries !== 'object' || u.entries === null) throw new Error('update.entries: expected an object');
  }
  return d;
}
