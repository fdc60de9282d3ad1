import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { ProxySetting } from '../download/proxy.js';
import { sdkClientFactory, type HubClient, type HubClientFactory, type HubTransport, type HubTwin } from './hub-client.js';

/** A direct method's answer. */
export interface MethodAnswer {
  status: number;
  payload: unknown;
}

export type MethodHandler = (payload: unknown) => Promise<MethodAnswer>;

export interface HubLinkOptions {
  connectionString: string;
  /** PEM of a private CA to trust (the emulator's), or undefined for the public roots. */
  ca?: string;
  /** Default 'mqtt'. */
  transport?: HubTransport;
  /** For 'mqtt-ws': an http:// proxy URL, null for none, undefined for HTTPS_PROXY / NO_PROXY. */
  proxy?: ProxySetting;
  logger: Logger;
  /**
   * Resolves once the wall clock can be trusted (a Pi without RTC starts behind: its SAS tokens
   * would be expired). stop() aborts the signal; the promise may then reject.
   */
  waitForPlausibleClock: (signal: AbortSignal) => Promise<void>;
  /** Builds the device client of each attempt; default: the device SDK (sdkClientFactory). */
  clientFactory?: HubClientFactory;
  /** Timeouts, shortened by tests. */
  openTimeoutMs?: number;
  twinTimeoutMs?: number;
  maxBackoffMs?: number;
  /** How long a discarded client's close is awaited before it is left to finish in the background. */
  closeWaitMs?: number;
}

/**
 * The daemon's link to IoT Hub. It owns every retry the SDK leaves to its user: the first open
 * (which the SDK never retries), reconnects after a drop, twin requests that never answer (the
 * client is rebuilt), and authentication failures (a clock that was behind, a hub not yet knowing the
 * device): all are retried with backoff, forever, while the daemon works on offline.
 *
 * Emits 'twinRead' after every (re)connect once the twin has been read: the hub is reached. Then
 * emits 'desired' with the whole desired document, and again after every desired patch.
 */
export class HubLink extends EventEmitter<{ twinRead: []; desired: [desired: Record<string, unknown>] }> {
  private client: HubClient | null = null;
  private twin: HubTwin | null = null;
  private generation = 0;
  private stopped = false;
  private attempt = 0;
  /** Connections that came up but lost a feature: never reset, so a hub that always refuses one is retried at most once a maxBackoffMs. */
  private lostFeatures = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private connecting = false;
  /** A rebuild asked for while a connect was under way (a drop or lost feature during it): done after it. */
  private rebuildAfterConnect = false;
  private methods: Record<string, MethodHandler> = {};
  private readonly stopping = new AbortController();
  private readonly createClient: HubClientFactory;

  constructor(private readonly options: HubLinkOptions) {
    super();
    const transport = options.transport ?? 'mqtt';
    if (transport === 'mqtt' && typeof options.proxy === 'string') {
      options.logger.warn('a hub proxy is set but the transport is mqtt: MQTT over TLS goes direct; use the mqtt-ws transport to go through the proxy');
    }
    this.createClient =
      options.clientFactory ?? sdkClientFactory({ connectionString: options.connectionString, ca: options.ca, transport, proxy: options.proxy });
  }

  get connected(): boolean {
    return this.twin !== null;
  }

  /** The direct methods to answer, from the next connection on (set them before start()). */
  handleMethods(methods: Record<string, MethodHandler>): void {
    this.methods = { ...methods };
  }

  start(): void {
    void this.connect();
  }

  /**
   * Ends the link within about closeWaitMs whatever the network or the SDK does: the clock wait
   * is aborted, a connect in progress is abandoned, and the client's close is awaited only briefly
   * (it may hang until a dead hub's connect times out) and otherwise finishes in the background.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping.abort();
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    await this.discardClient();
  }

  /**
   * Sends a reported-properties patch. Resolves true once the hub acknowledged it, false when the
   * link is down, the hub refused it, or did not answer in time (the link is then rebuilt).
   */
  async updateReported(patch: Record<string, unknown>, timeoutMs = 10_000): Promise<boolean> {
    const twin = this.twin;
    const generation = this.generation;
    if (!twin) return false;
    const result = await withTimeout(
      twin.updateReported(patch).then(
        () => true,
        (err: Error) => {
          this.options.logger.warn({ err: err.message }, 'the hub refused a reported-properties patch');
          return false;
        },
      ),
      timeoutMs,
    );
    if (result === 'timeout') {
      this.options.logger.warn('the hub did not acknowledge a reported-properties patch in time; rebuilding the link');
      if (generation === this.generation) this.reconnectSoon(this.backoff());
      return false;
    }
    return result;
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    if (this.connecting) {
      this.rebuildAfterConnect = true;
      return;
    }
    this.connecting = true;
    try {
      await this.options.waitForPlausibleClock(this.stopping.signal);
      await this.discardClient();
      if (this.stopped) return;
      const generation = ++this.generation;
      const client = this.createClient();
      this.client = client;
      client.onError((err) => {
        // A feature the daemon lives by (firmwareUpdate, desired updates) is off on this connection:
        // rebuild it, as after a drop, rather than stay connected and deaf.
        if (generation !== this.generation || this.stopped) return;
        const delay = this.delayFor(this.lostFeatures++);
        this.options.logger.warn({ err: err.message, retryInMs: delay }, 'the hub link lost direct methods or desired updates; rebuilding it');
        this.reconnectSoon(delay);
      });
      client.onDisconnect(() => {
        if (generation !== this.generation || this.stopped) return;
        this.options.logger.warn('disconnected from the hub; reconnecting');
        this.reconnectSoon(this.backoff());
      });
      for (const [name, handler] of Object.entries(this.methods)) {
        client.onMethod(name, (payload, respond) => void this.answer(name, handler, payload, respond));
      }
      const opened = await withTimeout(client.open(), this.options.openTimeoutMs ?? 30_000);
      if (opened === 'timeout') throw new Error('no answer from the hub');
      if (this.stopped) return;
      const twin = await withTimeout(client.getTwin(), this.options.twinTimeoutMs ?? 15_000);
      if (twin === 'timeout') throw new Error('the hub did not answer the twin request');
      if (generation !== this.generation || this.stopped) return;
      this.twin = twin;
      this.attempt = 0;
      this.options.logger.info('connected to the hub');
      this.emit('twinRead');
      twin.onDesired?.((desired) => {
        if (generation === this.generation && !this.stopped) this.emit('desired', desired);
      });
    } catch (err) {
      if (this.stopped) return;
      const delay = this.backoff();
      this.options.logger.warn({ err: (err as Error).message, retryInMs: delay }, 'cannot reach the hub; will retry');
      void this.discardClient();
      this.schedule(delay);
    } finally {
      this.connecting = false;
      if (this.rebuildAfterConnect) {
        this.rebuildAfterConnect = false;
        this.reconnectSoon(this.backoff());
      }
    }
  }

  private async answer(name: string, handler: MethodHandler, payload: unknown, respond: (status: number, payload: unknown) => Promise<void>): Promise<void> {
    let answer: MethodAnswer;
    try {
      answer = await handler(payload);
    } catch (err) {
      this.options.logger.error({ err: (err as Error).message, method: name }, 'method handler failed');
      answer = { status: 500, payload: { message: `internal error: ${(err as Error).message}` } };
    }
    try {
      await respond(answer.status, answer.payload);
    } catch (err) {
      this.options.logger.warn({ err: (err as Error).message, method: name }, 'could not send the method answer');
    }
  }

  /** Drops the link now and connects again after `delayMs`. */
  private reconnectSoon(delayMs: number): void {
    this.twin = null;
    this.schedule(delayMs);
  }

  private schedule(delayMs: number): void {
    if (this.stopped || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.connect();
    }, delayMs);
  }

  /** The next retry's delay; counts the attempt. */
  private backoff(): number {
    return this.delayFor(this.attempt++);
  }

  /** The delay before retry number `n` (from 0): 1 s doubling up to maxBackoffMs, jittered down to half. */
  private delayFor(n: number): number {
    const max = this.options.maxBackoffMs ?? 60_000;
    const base = Math.min(max, 1000 * 2 ** Math.min(n, 16));
    return Math.round(base / 2 + Math.random() * (base / 2));
  }

  /** Drops the current client; its close is awaited at most closeWaitMs and never fails. */
  private async discardClient(): Promise<void> {
    const client = this.client;
    this.client = null;
    this.twin = null;
    if (!client) return;
    const closed = Promise.resolve()
      .then(() => client.close())
      .catch(() => undefined);
    await withTimeout(closed, this.options.closeWaitMs ?? 1000);
  }
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
