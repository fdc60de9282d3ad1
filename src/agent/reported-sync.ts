import type { Logger } from 'pino';

export interface ReportedSink {
  readonly connected: boolean;
  updateReported(patch: Record<string, unknown>, timeoutMs?: number): Promise<boolean>;
}

/**
 * Keeps the twin's reported properties in step with the persisted device state: the persisted
 * outbox. The state file holds every reached status before it is reported; this class sends the
 * whole reported picture (built from that state) until the hub acknowledges it, again after every
 * reconnect and at every start. Status changes go at once; progress-only changes are coalesced to
 * at most one patch per interval, since every patch costs the owner an IoT Hub message.
 */
export class ReportedSync {
  private acked: string | null = null;
  private sending: Promise<void> | null = null;
  private progressTimer: NodeJS.Timeout | null = null;
  private lastSentAt = 0;
  private waiters: (() => void)[] = [];
  private stopped = false;
  /** A status change arrived while a patch was in flight: send again right after. */
  private statusPending = false;

  constructor(
    private readonly sink: ReportedSink,
    private readonly build: () => Record<string, unknown>,
    private readonly options: { progressIntervalMs: number; logger: Logger },
  ) {}

  /** A status (or inventory) change: send now. */
  statusChanged(): void {
    this.statusPending = true;
    if (this.progressTimer) {
      clearTimeout(this.progressTimer);
      this.progressTimer = null;
    }
    this.kick();
  }

  /** Progress moved: send within the progress interval, not more often. */
  progressChanged(): void {
    if (this.progressTimer || this.stopped) return;
    const wait = Math.max(0, this.lastSentAt + this.options.progressIntervalMs - Date.now());
    this.progressTimer = setTimeout(() => {
      this.progressTimer = null;
      this.kick();
    }, wait);
  }

  /** The link came (back) up: whatever the hub has may be stale. */
  linkUp(): void {
    this.acked = null;
    this.kick();
  }

  /** Resolves true once the current picture is acknowledged, false after timeoutMs. */
  async flush(timeoutMs: number): Promise<boolean> {
    this.kick();
    if (this.inStep()) return true;
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.waiters.push(done);
    });
  }

  stop(): void {
    this.stopped = true;
    if (this.progressTimer) clearTimeout(this.progressTimer);
  }

  private inStep(): boolean {
    return this.acked === JSON.stringify(this.build());
  }

  private kick(): void {
    if (this.stopped || this.sending) return;
    this.sending = this.sendUntilInStep().finally(() => {
      this.sending = null;
    });
  }

  private async sendUntilInStep(): Promise<void> {
    // Sends while statuses keep changing; a change that is only progress waits for its timer.
    while (!this.stopped && this.sink.connected) {
      this.statusPending = false;
      const picture = this.build();
      const json = JSON.stringify(picture);
      if (json === this.acked) break;
      this.lastSentAt = Date.now();
      const ok = await this.sink.updateReported(picture);
      if (!ok) return; // the link is rebuilt; linkUp() sends again
      this.acked = json;
      if (!this.statusPending) {
        if (!this.inStep()) this.progressChanged();
        break;
      }
    }
    if (this.inStep()) {
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w();
    }
  }
}
