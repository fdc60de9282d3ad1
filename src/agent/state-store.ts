import { rename } from 'node:fs/promises';
import { join } from 'node:path';
import { readStateFile, StateFileError, writeStateFile } from '../os/state-file.js';
import { emptyState, validateDeviceState, withStatus, type DeviceState, type StateRecovery } from './device-state.js';

/**
 * The schema this agent writes. 1: piota 0.1.0. 2: adds `update.status`, `update.validator`,
 * `recovery`; readers of 2 and later read newer files by the rules in docs/update-workflow.md
 * ("State compatibility"), never refusing one.
 */
export const STATE_SCHEMA = 2;

export interface LoadedState {
  state: DeviceState;
  /** Set when the state file was damaged and the daemon recovered (also kept in state.recovery). */
  recovery: StateRecovery | null;
}

/**
 * The device's state file, `<stateDir>/state.json`: the single source of truth after a restart.
 * Every save keeps the previous generation as `state.json.prev`, so a file damaged by a bad medium or
 * a bug has a good one to fall back to. The daemon always comes up: a file it cannot use is moved
 * aside, and it starts with what can be rebuilt (the boot facts and the running version come from the
 * boot firmware and the image; the anti-rollback floor lives in a file of its own).
 */
export class StateStore {
  readonly path: string;
  readonly previousPath: string;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    stateDir: string,
    /**
     * The plausible-clock floor to persist with each save (see clock-floor.ts, which keeps it monotonic
     * and lowers it only to a synchronised clock); without one, the state's own value is kept.
     */
    private readonly clockFloor: (() => number) | null = null,
    private readonly agentVersion = 'unknown',
  ) {
    this.path = join(stateDir, 'state.json');
    this.previousPath = `${this.path}.prev`;
  }

  /**
   * Reads the state without changing anything on disk (for `piota status`); throws StateFileError.
   * A save replaces the file with two renames: a reader that comes between them finds only the
   * previous generation, which is then the current picture.
   */
  async read(): Promise<DeviceState> {
    return (await readStateFile(this.path, Infinity, validateDeviceState)) ?? (await this.readPrevious()) ?? emptyState();
  }

  /**
   * Reads the state for the daemon: the current file, else the previous generation, else an empty
   * state; a damaged file is moved aside (`state.json.damaged-<time>`) and the recovery recorded.
   * Never throws for what is in the files.
   */
  async load(now: Date = new Date()): Promise<LoadedState> {
    let reason: string;
    try {
      const state = await readStateFile(this.path, Infinity, validateDeviceState);
      if (state) return { state, recovery: null };
      // No current file: a power cut between the two renames of a save leaves only the previous one.
      const previous = await this.readPrevious();
      if (previous) return { state: previous, recovery: null };
      return { state: emptyState(), recovery: null };
    } catch (err) {
      if (!(err instanceof StateFileError)) throw err;
      reason = err.message;
    }
    const movedTo = await this.moveAside(this.path, now);
    const previous = await this.readPrevious();
    const state = previous ?? emptyState();
    const recovery: StateRecovery = { at: now.toISOString(), reason, restoredFrom: previous ? 'previous' : 'rebuilt', movedTo };
    state.recovery = recovery;
    return { state, recovery };
  }

  /** Persists a snapshot taken now; saves land on disk in the order they were asked for. */
  save(state: DeviceState): Promise<void> {
    if (this.clockFloor) state.newestTimestamp = this.clockFloor();
    const snapshot = structuredClone(withStatus(state));
    const write = this.queue.then(() => this.write(snapshot));
    this.queue = write.catch(() => undefined);
    return write;
  }

  private async write(snapshot: DeviceState): Promise<void> {
    await writeStateFile(this.path, STATE_SCHEMA, snapshot, {
      mode: 0o600,
      mkdirs: true,
      writtenBy: `piota ${this.agentVersion}`,
      // The file being replaced was read back fine when it was written: keep it as the previous generation.
      keepPreviousAs: this.previousPath,
    });
  }

  private async readPrevious(): Promise<DeviceState | undefined> {
    try {
      return await readStateFile(this.previousPath, Infinity, validateDeviceState);
    } catch (err) {
      if (!(err instanceof StateFileError)) throw err;
      return undefined;
    }
  }

  private async moveAside(path: string, now: Date): Promise<string | null> {
    const to = `${path}.damaged-${now.toISOString().replace(/[:.]/g, '-')}`;
    try {
      await rename(path, to);
      return to;
    } catch {
      return null;
    }
  }
}
