import { join } from 'node:path';
import { readStateFile, writeStateFile } from '../os/state-file.js';

const SCHEMA = 1;

export interface SavedSubscription {
  topic: string;
  qos: number;
}

function validate(data: unknown): Record<string, SavedSubscription[]> {
  if (typeof data !== 'object' || data === null) throw new Error('expected an object of client sessions');
  for (const [id, subs] of Object.entries(data)) {
    if (!Array.isArray(subs) || subs.some((s) => typeof s?.topic !== 'string' || typeof s?.qos !== 'number')) {
      throw new Error(`session '${id}' must be a list of {topic, qos}`);
    }
  }
  return data as Record<string, SavedSubscription[]>;
}

/**
 * Which topics each device has subscribed to. IoT Hub keeps a `clean:false` session across the
 * device's reconnects and across its own restarts; the device SDK relies on that (it re-sends only
 * the methods subscription after a reconnect). Persistent sessions are saved in DIR/sessions.json;
 * clean sessions live in memory only.
 */
export class SessionStore {
  private readonly sessions = new Map<string, Map<string, number>>();
  private readonly persistent = new Set<string>();
  private saving: Promise<void> = Promise.resolve();
  private dirty = false;
  private timer: NodeJS.Timeout | undefined;

  private constructor(private readonly file: string) {}

  static async open(hubDir: string): Promise<SessionStore> {
    const store = new SessionStore(join(hubDir, 'sessions.json'));
    const saved = (await readStateFile(store.file, SCHEMA, validate)) ?? {};
    for (const [id, subs] of Object.entries(saved)) {
      store.sessions.set(id, new Map(subs.map((s) => [s.topic, s.qos])));
      store.persistent.add(id);
    }
    return store;
  }

  /** Saved persistent sessions, to hand to the broker at start. */
  saved(): Array<{ clientId: string; subscriptions: SavedSubscription[] }> {
    return [...this.persistent].map((clientId) => ({ clientId, subscriptions: this.subscriptions(clientId) }));
  }

  /** A client connected: a clean session forgets what the previous one held. */
  connected(clientId: string, clean: boolean): void {
    if (clean) {
      this.sessions.set(clientId, new Map());
      if (this.persistent.delete(clientId)) this.changed();
    } else {
      if (!this.sessions.has(clientId)) this.sessions.set(clientId, new Map());
      if (!this.persistent.has(clientId)) {
        this.persistent.add(clientId);
        this.changed();
      }
    }
  }

  /** A clean session ends with its connection. */
  disconnected(clientId: string, clean: boolean): void {
    if (clean) this.sessions.delete(clientId);
  }

  subscribed(clientId: string, subs: SavedSubscription[]): void {
    const session = this.sessions.get(clientId) ?? new Map<string, number>();
    this.sessions.set(clientId, session);
    for (const s of subs) session.set(s.topic, s.qos);
    if (this.persistent.has(clientId)) this.changed();
  }

  unsubscribed(clientId: string, topics: string[]): void {
    const session = this.sessions.get(clientId);
    if (!session) return;
    for (const t of topics) session.delete(t);
    if (this.persistent.has(clientId)) this.changed();
  }

  /** Forgets a device entirely (it was deleted from the registry). */
  forget(clientId: string): void {
    this.sessions.delete(clientId);
    if (this.persistent.delete(clientId)) this.changed();
  }

  has(clientId: string, topic: string): boolean {
    return this.sessions.get(clientId)?.has(topic) ?? false;
  }

  subscriptions(clientId: string): SavedSubscription[] {
    return [...(this.sessions.get(clientId) ?? new Map<string, number>())].map(([topic, qos]) => ({ topic, qos }));
  }

  private changed(): void {
    this.dirty = true;
    // Coalesce bursts (200 devices subscribing at once) into one write.
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, 50);
  }

  /** Writes the persistent sessions now if anything changed; used by the timer and on close. */
  async flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.saving = this.saving.then(async () => {
      if (!this.dirty) return;
      this.dirty = false;
      const data: Record<string, SavedSubscription[]> = {};
      for (const id of this.persistent) data[id] = this.subscriptions(id);
      await writeStateFile(this.file, SCHEMA, data, { mkdirs: true }).catch(() => {
        this.dirty = true; // keep it for the next attempt rather than crash the hub
      });
    });
    await this.saving;
  }
}
