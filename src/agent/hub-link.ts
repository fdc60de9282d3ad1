import deviceSdk from 'azure-iot-device';
import mqttTransport from 'azure-iot-device-mqtt';
import type { Logger } from 'pino';

type DeviceClient = InstanceType<typeof deviceSdk.Client>;
type Twin = Awaited<ReturnType<DeviceClient['getTwin']>>;
type MethodRequest = deviceSdk.DeviceMethodRequest;
type MethodResponse = deviceSdk.DeviceMethodResponse;

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
  methods: Record<string, MethodHandler>;
  logger: Logger;
  /** Called after every (re)connect once the twin has been read: the hub is reached. */
  onTwinRead: () => void;
  /** Resolves once the wall clock can be trusted (a Pi without RTC starts behind). */
  waitForPlausibleClock: () => Promise<void>;
  /** Timeouts, shortened by tests. */
  openTimeoutMs?: number;
  twinTimeoutMs?: number;
  maxBackoffMs?: number;
}

/**
 * The daemon's link to IoT Hub over MQTT. It owns every retry the SDK leaves to its user: the first
 * open (which the SDK never retries), reconnects after a drop, twin requests that never answer (the
 * client is rebuilt), and authentication failures (a clock that was behind, a hub not yet knowing the
 * device): all are retried with backoff, forever, while the daemon works on offline.
 */
export class HubLink {
  private client: DeviceClient | null = null;
  private twin: Twin | null = null;
  private generation = 0;
  private stopped = false;
  private attempt = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private connecting = false;

  constructor(private readonly options: HubLinkOptions) {}

  get connected(): boolean {
    return this.twin !== null;
  }

  start(): void {
    void this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.discardClient();
  }

  /**
   * Sends a reported-properties patch. Resolves true once the hub acknowledged it, false when the
   * link is down or the hub did not answer in time (the link is then rebuilt).
   */
  async updateReported(patch: Record<string, unknown>, timeoutMs = 10_000): Promise<boolean> {
    const twin = this.twin;
    const generation = this.generation;
    if (!twin) return false;
    const reported = twin.properties.reported as unknown as { update(p: unknown, cb: (err?: Error) => void): void };
    const result = await withTimeout(
      new Promise<boolean>((resolve) => reported.update(patch, (err) => {
        if (err) this.options.logger.warn({ err: err.message }, 'the hub refused a reported-properties patch');
        resolve(!err);
      })),
      timeoutMs,
    );
    if (result === 'timeout') {
      this.options.logger.warn('the hub did not acknowledge a reported-properties patch in time; rebuilding the link');
      if (generation === this.generation) this.reconnectSoon();
      return false;
    }
    return result;
  }

  private async connect(): Promise<void> {
    if (this.stopped || this.connecting) return;
    this.connecting = true;
    try {
      await this.options.waitForPlausibleClock();
      await this.discardClient();
      if (this.stopped) return;
      const generation = ++this.generation;
      const client = deviceSdk.Client.fromConnectionString(this.options.connectionString, mqttTransport.Mqtt);
      this.client = client;
      client.on('error', (err: Error) => this.options.logger.warn({ err: err.message }, 'hub link error'));
      client.on('disconnect', () => {
        if (generation !== this.generation || this.stopped) return;
        this.options.logger.warn('disconnected from the hub; reconnecting');
        this.twin = null;
        this.reconnectSoon();
      });
      for (const [name, handler] of Object.entries(this.options.methods)) {
        client.onDeviceMethod(name, (request: MethodRequest, response: MethodResponse) => {
          void this.answer(name, handler, request, response);
        });
      }
      if (this.options.ca) await client.setOptions({ ca: this.options.ca });
      const opened = await withTimeout(client.open(), this.options.openTimeoutMs ?? 30_000);
      if (opened === 'timeout') throw new Error('no answer from the hub');
      const twin = await withTimeout(client.getTwin(), this.options.twinTimeoutMs ?? 15_000);
      if (twin === 'timeout') throw new Error('the hub did not answer the twin request');
      if (generation !== this.generation || this.stopped) return;
      this.twin = twin;
      this.attempt = 0;
      this.options.logger.info('connected to the hub');
      this.options.onTwinRead();
    } catch (err) {
      if (this.stopped) return;
      const delay = this.backoff();
      this.options.logger.warn({ err: (err as Error).message, retryInMs: delay }, 'cannot reach the hub; will retry');
      this.twin = null;
      void this.discardClient();
      this.schedule(delay);
    } finally {
      this.connecting = false;
    }
  }

  private async answer(name: string, handler: MethodHandler, request: MethodRequest, response: MethodResponse): Promise<void> {
    let answer: MethodAnswer;
    try {
      answer = await handler(request.payload);
    } catch (err) {
      this.options.logger.error({ err: (err as Error).message, method: name }, 'method handler failed');
      answer = { status: 500, payload: { message: `internal error: ${(err as Error).message}` } };
    }
    try {
      await response.send(answer.status, answer.payload);
    } catch (err) {
      this.options.logger.warn({ err: (err as Error).message, method: name }, 'could not send the method answer');
    }
  }

  private reconnectSoon(): void {
    this.twin = null;
    this.schedule(this.backoff());
  }

  private schedule(delayMs: number): void {
    if (this.stopped || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.connect();
    }, delayMs);
  }

  private backoff(): number {
    const max = this.options.maxBackoffMs ?? 60_000;
    const base = Math.min(max, 1000 * 2 ** Math.min(this.attempt, 16));
    this.attempt++;
    return Math.round(base / 2 + Math.random() * (base / 2));
  }

  private async discardClient(): Promise<void> {
    const client = this.client;
    this.client = null;
    this.twin = null;
    if (!client) return;
    client.removeAllListeners();
    client.on('error', () => undefined);
    await withTimeout(client.close().catch(() => undefined), 5000);
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
