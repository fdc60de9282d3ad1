import { readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { readStateFile, writeStateFile } from '../os/state-file.js';
import { validateDeviceRecord, type DeviceRecord } from './device-record.js';

const SCHEMA = 1;
const SUFFIX = '.json';

/**
 * The device registry and twins, one file per device in DIR/devices. One file each means
 * `piota hub device add` can register a device while the hub runs without the two programs
 * overwriting each other's changes: the CLI only ever creates new files, and the hub looks a
 * device up on disk whenever it meets an id it does not hold in memory.
 */
export class DeviceStore {
  private readonly records = new Map<string, DeviceRecord>();
  private readonly deleted = new Set<string>();
  /** Per device: the write in progress (or queued), so saves are serialised and coalesced. */
  private readonly writing = new Map<string, Promise<void>>();
  private readonly queued = new Map<string, Promise<void>>();

  private constructor(readonly dir: string) {}

  static async open(hubDir: string): Promise<DeviceStore> {
    const store = new DeviceStore(join(hubDir, 'devices'));
    await store.scan();
    return store;
  }

  private fileOf(id: string): string {
    // encodeURIComponent keeps every allowed id a single, unambiguous file name.
    return join(this.dir, encodeURIComponent(id) + SUFFIX);
  }

  private async load(id: string): Promise<DeviceRecord | undefined> {
    const record = await readStateFile(this.fileOf(id), SCHEMA, validateDeviceRecord);
    if (record && record.deviceId !== id) throw new Error(`${this.fileOf(id)}: holds device '${record.deviceId}', expected '${id}'`);
    return record;
  }

  /** Reads every device file not yet in memory (devices added by another process). */
  async scan(): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const name of names) {
      if (!name.endsWith(SUFFIX) || name.startsWith('.')) continue;
      const id = decodeURIComponent(name.slice(0, -SUFFIX.length));
      if (this.records.has(id) || this.deleted.has(id)) continue;
      const record = await this.load(id);
      if (record) this.records.set(id, record);
    }
  }

  /** The device held in memory (no disk access). */
  get(id: string): DeviceRecord | undefined {
    return this.records.get(id);
  }

  /** The device, reading its file if another process registered it since we started. */
  async find(id: string): Promise<DeviceRecord | undefined> {
    const known = this.records.get(id);
    if (known) return known;
    this.deleted.delete(id);
    const record = await this.load(id).catch(() => undefined);
    if (record && !this.records.has(id)) this.records.set(id, record);
    return this.records.get(id);
  }

  /** All devices, after picking up any added by another process. */
  async all(): Promise<DeviceRecord[]> {
    await this.scan();
    return [...this.records.values()];
  }

  count(): number {
    return this.records.size;
  }

  /** Replaces the in-memory record and persists it; resolves once it is on disk. */
  put(record: DeviceRecord): Promise<void> {
    this.records.set(record.deviceId, record);
    this.deleted.delete(record.deviceId);
    return this.save(record.deviceId);
  }

  private save(id: string): Promise<void> {
    // A write that has not started yet will pick up this change too: share it.
    const pending = this.queued.get(id);
    if (pending) return pending;
    const before = this.writing.get(id) ?? Promise.resolve();
    const next = before.then(() => {
      this.queued.delete(id);
      const record = this.records.get(id);
      return record ? writeStateFile(this.fileOf(id), SCHEMA, record, { mode: 0o600, mkdirs: true }) : undefined;
    });
    this.queued.set(id, next);
    const settled = next.then(
      () => undefined,
      () => undefined,
    );
    this.writing.set(id, settled);
    void settled.then(() => {
      if (this.writing.get(id) === settled) this.writing.delete(id);
    });
    return next;
  }

  async remove(id: string): Promise<void> {
    this.records.delete(id);
    this.deleted.add(id);
    await (this.writing.get(id) ?? Promise.resolve());
    await unlink(this.fileOf(id)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }

  /** Waits for every write in progress (used on close). */
  async flush(): Promise<void> {
    await Promise.all([...this.writing.values()]);
  }
}

/** Registers a device by writing its file, for use while no hub holds the directory in memory. */
export async function writeDeviceFile(hubDir: string, record: DeviceRecord): Promise<void> {
  await writeStateFile(join(hubDir, 'devices', encodeURIComponent(record.deviceId) + SUFFIX), SCHEMA, record, { mode: 0o600, mkdirs: true });
}

export async function readDeviceFile(hubDir: string, id: string): Promise<DeviceRecord | undefined> {
  return readStateFile(join(hubDir, 'devices', encodeURIComponent(id) + SUFFIX), SCHEMA, validateDeviceRecord);
}
