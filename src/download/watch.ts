import type { BodyReader } from './http1-client.js';
import { piecesOf } from './pieces.js';
import { DownloadError } from './errors.js';

export interface MinSpeed {
  bytesPerSecond: number;
  windowMs: number;
}

export interface WatchLimits {
  /** No byte for this long, while waiting for the server, ends the attempt (networkError). */
  idleTimeoutMs: number;
  /** The whole attempt, from the request to the body's last byte (deadlineExceeded). */
  deadlineMs?: number;
  /** The average over the last window below this ends the attempt (tooSlow). */
  minSpeed?: MinSpeed;
}

/**
 * Guards one download attempt against a server that is too slow: an idle timeout, an overall
 * deadline and a minimum speed. When a limit trips, the request is aborted and the body ends in a
 * DownloadError that says which limit and with which figures.
 *
 * Idle time and speed are measured on a clock that runs only while the body waits for the server,
 * not while the caller works on a chunk: a slow consumer (an SD card syncing) pauses the socket,
 * and must not count as a slow server. The deadline is wall time: it bounds the attempt as a whole.
 */
export class DownloadWatch {
  /** The limit that tripped, if one did. */
  failure: DownloadError | null = null;
  private readonly controller = new AbortController();
  private readonly timers: NodeJS.Timeout[] = [];
  private body: BodyReader | undefined;
  private baseBytesIn = 0;
  private lastLive = 0;
  private lastByteAt = 0;
  private expected: number | null = null;
  /** Body bytes the caller has read; `arrived` also counts those the socket holds, not yet read. */
  private received = 0;
  private waitedMs = 0;
  private waitingSince: number | null = null;
  private samples: { clock: number; bytes: number }[] = [];
  private readonly unlink: () => void;

  constructor(
    private readonly host: string,
    private readonly limits: WatchLimits,
    outer?: AbortSignal,
  ) {
    const abort = () => this.controller.abort(outer?.reason);
    if (outer?.aborted) abort();
    outer?.addEventListener('abort', abort, { once: true });
    this.unlink = () => outer?.removeEventListener('abort', abort);
    const { deadlineMs } = limits;
    if (deadlineMs !== undefined) {
      this.every(deadlineMs, () => {
        const of = this.expected === null ? '' : ` of ${this.expected}`;
        this.trip(new DownloadError('deadlineExceeded', `the download from ${host} did not finish within ${seconds(deadlineMs)} s (${this.arrived}${of} bytes received)`, true));
      }, false);
    }
  }

  /** For the request: aborted when the caller's signal is, or when a limit trips. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /**
   * Watches the response body from now on, and gives it back as a body that fails with a
   * DownloadError: the limit that tripped, or a networkError when the connection breaks or closes
   * before `expectedLength` bytes (the declared length) arrived.
   */
  watch(body: BodyReader, expectedLength: number | null): WatchedBody {
    this.body = body;
    this.baseBytesIn = body.bytesIn;
    this.expected = expectedLength;
    const { idleTimeoutMs, minSpeed } = this.limits;
    const tick = Math.min(1000, Math.max(10, Math.min(idleTimeoutMs, minSpeed?.windowMs ?? Infinity) / 4));
    this.samples = [{ clock: 0, bytes: 0 }];
    this.every(tick, () => this.check(), true);
    return new WatchedBody((into) => this.readInto(body, into), () => this.close(body));
  }

  /** Ends the watch (the body ended, or the caller closed it). */
  stop(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.length = 0;
    this.unlink();
  }

  private closed = false;

  private close(body: BodyReader): void {
    if (this.closed) return;
    this.closed = true;
    this.stop();
    body.destroy();
  }

  /** One read of the body, timed as waiting for the server; short of `into` means the body ended. */
  private async readInto(body: BodyReader, into: Buffer): Promise<number> {
    if (this.failure) throw this.failure;
    if (this.closed) return 0;
    this.waitingSince = Date.now();
    let n: number;
    try {
      n = await body.readInto(into);
    } catch (err) {
      const failure = this.failure ?? this.brokeOff(err);
      this.close(body);
      throw failure;
    } finally {
      this.waitedMs += Date.now() - (this.waitingSince ?? Date.now());
      this.waitingSince = null;
    }
    this.received += n;
    if (n < into.length) {
      this.close(body);
      if (this.failure) throw this.failure;
      if (this.expected !== null && this.received < this.expected) {
        throw new DownloadError('networkError', `the download from ${this.host} ended after ${this.received} of ${this.expected} bytes, short of the length it declared`, true);
      }
    }
    return n;
  }

  private brokeOff(err: unknown): DownloadError {
    if (err instanceof DownloadError) return err;
    const e = err as NodeJS.ErrnoException;
    const of = this.expected === null ? '' : ` of ${this.expected}`;
    const code = e.code && !e.message.includes(e.code) ? ` (${e.code})` : '';
    return new DownloadError('networkError', `the download from ${this.host} broke off after ${this.received}${of} bytes: ${e.message}${code}`, true);
  }

  private check(): void {
    const now = Date.now();
    const { idleTimeoutMs, minSpeed } = this.limits;
    const live = this.arrived;
    if (live > this.lastLive) {
      this.lastLive = live;
      this.lastByteAt = now;
    }
    if (this.waitingSince !== null && now - Math.max(this.waitingSince, this.lastByteAt) >= idleTimeoutMs) {
      this.trip(new DownloadError('networkError', `no data from ${this.host} for ${seconds(idleTimeoutMs)} s (${live} bytes received)`, true));
      return;
    }
    if (!minSpeed) return;
    const clock = this.waitedMs + (this.waitingSince === null ? 0 : now - this.waitingSince);
    if (clock > this.samples[this.samples.length - 1].clock) this.samples.push({ clock, bytes: live });
    // Judge over the newest sample at least a window old, so the average covers a whole window.
    while (this.samples.length > 1 && this.samples[1].clock <= clock - minSpeed.windowMs) this.samples.shift();
    const base = this.samples[0];
    const span = clock - base.clock;
    if (span < minSpeed.windowMs) return;
    const speed = ((live - base.bytes) * 1000) / span;
    if (speed < minSpeed.bytesPerSecond) {
      this.trip(
        new DownloadError(
          'tooSlow',
          `the download from ${this.host} averaged ${Math.round(speed)} bytes/s over the last ${seconds(span)} s, below the minimum of ${minSpeed.bytesPerSecond} bytes/s (${live} bytes received)`,
          true,
        ),
      );
    }
  }

  /** Body bytes as they arrive, not as reads complete: one read may wait for megabytes on a slow link. */
  private get arrived(): number {
    return Math.max(this.received, (this.body?.bytesIn ?? 0) - this.baseBytesIn);
  }

  private trip(err: DownloadError): void {
    if (this.failure) return;
    this.failure = err;
    this.stop();
    this.controller.abort(err);
    this.body?.destroy(err);
  }

  private every(ms: number, run: () => void, repeat: boolean): void {
    // unref: a watch must never keep the process alive on its own.
    this.timers.push((repeat ? setInterval(run, ms) : setTimeout(run, ms)).unref());
  }
}

function seconds(ms: number): string {
  return String(Math.round(ms / 100) / 10);
}

/**
 * A watched response body. `readInto` fills the caller's buffer (the download's hot path: the
 * bytes are decrypted straight into it); iterating gives fresh 64 KiB pieces, for callers that
 * keep what they get. Either way it ends, or fails with a DownloadError, as the watch decides.
 */
export class WatchedBody implements AsyncIterable<Buffer> {
  private done = false;

  constructor(
    private readonly read: (into: Buffer) => Promise<number>,
    private readonly close: () => void,
  ) {}

  /** Fills `into` from its start; resolves with the count, less than into.length only at the end. */
  async readInto(into: Buffer): Promise<number> {
    if (this.done || into.length === 0) return 0;
    const n = await this.read(into);
    if (n < into.length) this.done = true;
    return n;
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return piecesOf(
      (into) => this.readInto(into),
      () => {
        this.done = true;
        this.close();
      },
    );
  }
}

