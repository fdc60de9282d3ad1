import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { RolloutError } from './errors.js';
import { HubCallError, type RolloutHub } from './hub-port.js';
import { recordDeviceId, recordFromTags, recordToTags, RECORD_TAG, type RolloutRecord } from './record.js';

/** A record as read, with the twin etag a write must match. */
export interface StoredRecord {
  record: RolloutRecord;
  etag: string | undefined;
}

/**
 * The rollout record, kept in the tags of a disabled registry identity per rollout
 * (`piota-rollout.NAME`). Every write is a read-modify-write guarded by the twin's etag, so a
 * pause typed on one workstation is never lost under a controller's write on another.
 */
export class RecordStore {
  constructor(private readonly hub: RolloutHub) {}

  async read(name: string): Promise<StoredRecord> {
    let twin;
    try {
      twin = await this.hub.getTwin(recordDeviceId(name));
    } catch (err) {
      if (err instanceof HubCallError && err.kind === 'notFound') throw new RolloutError('notFound', `no rollout named '${name}' in this hub`);
      throw err;
    }
    const record = recordFromTags(twin.tags);
    if (!record) throw new RolloutError('notFound', `no rollout named '${name}' in this hub (the identity ${recordDeviceId(name)} holds no record)`);
    return { record, etag: twin.etag };
  }

  /** Creates the holder and writes the first record; RolloutError('exists') if the name is taken. */
  async create(record: RolloutRecord): Promise<StoredRecord> {
    const id = recordDeviceId(record.definition.name);
    try {
      await this.hub.createDevice(id);
    } catch (err) {
      if (!(err instanceof HubCallError && err.kind === 'exists')) throw err;
      // The identity may be left from a start that died before writing the record: reuse it then.
      const twin = await this.hub.getTwin(id);
      if (recordFromTags(twin.tags)) throw new RolloutError('exists', `a rollout named '${record.definition.name}' exists already (piota rollout status ${record.definition.name})`);
    }
    const twin = await this.hub.updateTwin(id, { tags: recordToTags(record, null) });
    return { record, etag: twin.etag };
  }

  /** Writes `next` if the record is still at `stored.etag`; false (nothing written) if it changed. */
  async write(stored: StoredRecord, next: RolloutRecord): Promise<StoredRecord | null> {
    try {
      const twin = await this.hub.updateTwin(recordDeviceId(next.definition.name), { tags: recordToTags(next, stored.record) }, stored.etag);
      return { record: next, etag: twin.etag };
    } catch (err) {
      if (err instanceof HubCallError && err.kind === 'preconditionFailed') return null;
      throw err;
    }
  }

  /**
   * Applies `change` to the current record, re-reading and re-applying when another writer got
   * there first. `change` may throw (e.g. a state that refuses the event).
   */
  async update(name: string, change: (record: RolloutRecord) => RolloutRecord, attempts = 8): Promise<StoredRecord> {
    for (let i = 0; i < attempts; i++) {
      const stored = await this.read(name);
      const written = await this.write(stored, change(stored.record));
      if (written) return written;
    }
    throw new RolloutError('conflict', `rollout '${name}': the record kept changing under ${attempts} attempts to write it`);
  }

  /** Names of every rollout in the hub (one query). */
  async list(): Promise<string[]> {
    const twins = await this.hub.queryTwins(`IS_DEFINED(tags.${RECORD_TAG})`);
    return twins.map((t) => recordFromTags(t.tags)?.definition.name).filter((n): n is string => !!n).sort();
  }
}

/** This process's name as a controller: host, pid and a random part (pids repeat across machines). */
export function controllerIdentity(): string {
  return `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
}

/** The lease check: may `owner` drive the rollout now? */
export function mayDrive(record: RolloutRecord, owner: string, now: number): boolean {
  return !record.controller || record.controller.owner === owner || record.controller.expiresAt <= now;
}
