import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { once } from 'node:events';
import { createServer as createHttpServer, type Server } from 'node:http';
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { pino } from 'pino';
import type { HubClient, HubClientFactory, HubTwin } from '../../src/agent/hub-client.js';
import { HubLink, type HubLinkOptions, type MethodHandler } from '../../src/agent/hub-link.js';
import { addDevice } from '../../src/hub-emulator/index.js';
import { serviceClient, serviceRegistry } from '../../src/service/hub-connection.js';
import { eventually, hubForSuite, within } from '../hub-emulator/helpers.js';

const logger = pino({ level: 'silent' });
const never = <T>() => new Promise<T>(() => undefined);

type MethodCall = Parameters<HubClient['onMethod']>[1];

/** What one fake client does; each call not given succeeds at once. */
interface Script {
  open?: () => Promise<void>;
  getTwin?: () => Promise<HubTwin>;
  updateReported?: (patch: Record<string, unknown>) => Promise<void>;
  close?: () => Promise<void>;
  /** The twin's desired document; the fake twin then supports onDesired (FakeClient.patchDesired). */
  desired?: Record<string, unknown>;
}

/** A fake of our own HubClient port (the device SDK stands behind it in production). */
class FakeClient implements HubClient {
  readonly methods = new Map<string, MethodCall>();
  readonly patches: Record<string, unknown>[] = [];
  private readonly dropListeners: (() => void)[] = [];
  private readonly errorListeners: ((err: Error) => void)[] = [];
  private readonly desiredListeners: ((desired: Record<string, unknown>) => void)[] = [];
  closed = false;

  constructor(private readonly script: Script) {}
  onMethod(name: string, call: MethodCall): void {
    this.methods.set(name, call);
  }
  onDisconnect(listener: () => void): void {
    this.dropListeners.push(listener);
  }
  onError(listener: (err: Error) => void): void {
    this.errorListeners.push(listener);
  }
  open(): Promise<void> {
    return this.script.open?.() ?? Promise.resolve();
  }
  getTwin(): Promise<HubTwin> {
    return (
      this.script.getTwin?.() ??
      Promise.resolve({
        updateReported: (patch: Record<string, unknown>) => {
          this.patches.push(patch);
          return this.script.updateReported?.(patch) ?? Promise.resolve();
        },
        ...(this.script.desired
          ? {
              onDesired: (listener: (desired: Record<string, unknown>) => void) => {
                this.desiredListeners.push(listener);
                // As the SDK does: the current document soon after the listener is added.
                setImmediate(() => listener(structuredClone(this.script.desired!)));
              },
            }
          : {}),
      })
    );
  }
  /** The hub sends a desired patch; listeners get the merged document. */
  patchDesired(patch: Record<string, unknown>): void {
    Object.assign(this.script.desired!, patch);
    for (const listener of this.desiredListeners) listener(structuredClone(this.script.desired!));
  }
  close(): Promise<void> {
    this.closed = true;
    return this.script.close?.() ?? Promise.resolve();
  }
  /** The network drops the connection. */
  drop(): void {
    for (const listener of this.dropListeners) listener();
  }
  /** The SDK says a feature could not be enabled (its 'error' event): the connection stays up, deaf to it. */
  fail(err: Error): void {
    for (const listener of this.errorListeners) listener(err);
  }
}

/** A factory whose n-th client follows scripts[n] (the last script repeats). */
function fakes(...scripts: Script[]): { factory: HubClientFactory; clients: FakeClient[] } {
  const clients: FakeClient[] = [];
  const factory = () => {
    const client = new FakeClient(scripts[Math.min(clients.length, scripts.length - 1)] ?? {});
    clients.push(client);
    return client;
  };
  return { factory, clients };
}

const links: HubLink[] = [];

function fastLink(factory: HubClientFactory, options: Partial<HubLinkOptions> = {}): { link: HubLink; twinReads: () => number } {
  let reads = 0;
  const link = new HubLink({
    connectionString: 'unused by fakes',
    logger,
    waitForPlausibleClock: async () => undefined,
    clientFactory: factory,
    openTimeoutMs: 200,
    twinTimeoutMs: 100,
    maxBackoffMs: 20,
    closeWaitMs: 100,
    ...options,
  });
  link.on('twinRead', () => reads++);
  links.push(link);
  return { link, twinReads: () => reads };
}

/** A fast link over fakes following `scripts`, started, once it has read the twin. */
async function connectedLink(scripts: Script[], methods: Record<string, MethodHandler> = {}) {
  const { factory, clients } = fakes(...scripts);
  const { link, twinReads } = fastLink(factory);
  link.handleMethods(methods);
  link.start();
  await eventually(() => twinReads() === 1, 2000, 'the twin to be read');
  return { link, clients, twinReads };
}

describe('HubLink with a fake client', () => {
  afterEach(async () => {
    await Promise.all(links.splice(0).map((l) => l.stop()));
  });

  it('retries a first open that fails, and reads the twin', async () => {
    const { link, clients } = await connectedLink([{ open: () => Promise.reject(new Error('ECONNREFUSED')) }, {}]);
    expect(link.connected).toBe(true);
    expect(clients).toHaveLength(2);
    expect(clients[0].closed, 'the failed client is closed').toBe(true);
  });

  it('retries an open that never answers', async () => {
    const { clients } = await connectedLink([{ open: never }, {}]);
    expect(clients).toHaveLength(2);
  });

  it('reconnects with a new client after the connection drops', async () => {
    const { link, clients, twinReads } = await connectedLink([{}]);
    clients[0].drop();
    expect(link.connected).toBe(false);
    await eventually(() => twinReads() === 2, 2000, 'the twin read after the reconnect');
    expect(clients).toHaveLength(2);
    expect(clients[0].closed).toBe(true);
    // A late event from the discarded client changes nothing.
    clients[0].drop();
    await new Promise((r) => setTimeout(r, 60));
    expect(link.connected).toBe(true);
    expect(clients).toHaveLength(2);
  });

  it('rebuilds the link when the client says direct methods could not be enabled; an error from a discarded client changes nothing', async () => {
    const { link, clients, twinReads } = await connectedLink([{}]);
    clients[0].fail(new Error('subscribe to $iothub/methods/POST/# timed out'));
    expect(link.connected).toBe(false);
    await eventually(() => twinReads() === 2, 3000, 'the twin read on the rebuilt link');
    expect(clients).toHaveLength(2);
    expect(clients[0].closed).toBe(true);
    clients[0].fail(new Error('late'));
    await new Promise((r) => setTimeout(r, 60));
    expect(link.connected).toBe(true);
    expect(clients).toHaveLength(2);
  });

  it('a drop while the open is under way: once that connect ends, the link is rebuilt, not left on the dropped client', async () => {
    let release!: () => void;
    const opened = new Promise<void>((r) => (release = r));
    const { factory, clients } = fakes({ open: () => opened }, {});
    const { link, twinReads } = fastLink(factory, { openTimeoutMs: 5000 });
    link.start();
    await eventually(() => clients.length === 1, 2000, 'the first client');
    clients[0].drop();
    // The retry comes (maxBackoffMs 20) while the first connect still waits for its open.
    await new Promise((r) => setTimeout(r, 100));
    expect(clients).toHaveLength(1);
    release();
    await eventually(() => clients.length === 2 && twinReads() === 2, 3000, 'a second client after the first connect ended');
    expect(clients[0].closed).toBe(true);
    expect(link.connected).toBe(true);
  });

  it('rebuilds the client when the twin request is never answered', async () => {
    const { clients } = await connectedLink([{ getTwin: never }, {}]);
    expect(clients).toHaveLength(2);
    expect(clients[0].closed).toBe(true);
  });

  it('answers updateReported: true when acknowledged, false when refused or down, false and a rebuilt link on a timeout', async () => {
    let mode: 'ack' | 'refuse' | 'hang' = 'ack';
    const updateReported = () => (mode === 'ack' ? Promise.resolve() : mode === 'refuse' ? Promise.reject(new Error('400')) : never<void>());
    const { factory, clients } = fakes({ updateReported });
    const { link, twinReads } = fastLink(factory);
    expect(await link.updateReported({ a: 1 })).toBe(false); // not started: down
    link.start();
    await eventually(() => twinReads() === 1, 2000, 'the twin read');
    expect(await link.updateReported({ a: 2 })).toBe(true);
    mode = 'refuse';
    expect(await link.updateReported({ a: 3 })).toBe(false);
    expect(clients).toHaveLength(1); // a refusal is an answer: the link stays
    mode = 'hang';
    const started = Date.now();
    expect(await link.updateReported({ a: 4 }, 50)).toBe(false);
    expect(Date.now() - started).toBeLessThan(500);
    await eventually(() => twinReads() === 2, 2000, 'the rebuilt link');
    expect(clients).toHaveLength(2);
    expect(clients[0].patches).toEqual([{ a: 2 }, { a: 3 }, { a: 4 }]);
  });

  it("emits 'desired' after the twin read and after each patch; never from a discarded client", async () => {
    const { factory, clients } = fakes({ desired: { piota: { firmware: { id: 'r1' } }, $version: 2 } }, { desired: { $version: 3 } });
    const { link, twinReads } = fastLink(factory);
    const seen: { read: number; desired: Record<string, unknown> }[] = [];
    link.on('desired', (desired) => seen.push({ read: twinReads(), desired }));
    link.start();
    await eventually(() => seen.length === 1, 2000, 'the first desired document');
    expect(seen[0]).toEqual({ read: 1, desired: { piota: { firmware: { id: 'r1' } }, $version: 2 } });
    clients[0].patchDesired({ piota: { firmware: { id: 'r2' } } });
    expect(seen[1].desired.piota).toEqual({ firmware: { id: 'r2' } });
    clients[0].drop();
    await eventually(() => seen.length === 3, 2000, 'the desired document of the new connection');
    expect(seen[2].desired).toEqual({ $version: 3 });
    clients[0].patchDesired({ late: true });
    expect(seen).toHaveLength(3);
    expect(link.listenerCount('desired')).toBe(1);
  });

  it('routes direct methods to their handlers and answers 500 when a handler throws', async () => {
    const { clients } = await connectedLink([{}], {
      echo: async (payload) => ({ status: 200, payload: { got: payload } }),
      broken: async () => {
        throw new Error('boom');
      },
    });
    const call = (name: string, payload: unknown) =>
      new Promise<[number, unknown]>((resolve) => clients[0].methods.get(name)!(payload, async (status, body) => resolve([status, body])));
    expect(await call('echo', 7)).toEqual([200, { got: 7 }]);
    expect(await call('broken', null)).toEqual([500, { message: 'internal error: boom' }]);
  });

  it('stop() resolves within about a second while the open hangs and close never settles, and nothing reconnects', async () => {
    const { factory, clients } = fakes({ open: never, close: never });
    const { link } = fastLink(factory, { openTimeoutMs: 30_000, closeWaitMs: undefined });
    link.start();
    await eventually(() => clients.length === 1, 1000, 'the first client');
    const started = Date.now();
    await link.stop();
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(900); // the default wait for a clean close, no more
    expect(elapsed).toBeLessThan(1300);
    expect(clients[0].closed).toBe(true);
    await new Promise((r) => setTimeout(r, 100));
    expect(clients).toHaveLength(1);
  });

  it('stop() aborts the clock wait: no client is ever built', async () => {
    const { factory, clients } = fakes({});
    let seen: AbortSignal | undefined;
    const { link } = fastLink(factory, {
      waitForPlausibleClock: (signal) => {
        seen = signal;
        return new Promise((_, fail) => signal.addEventListener('abort', () => fail(signal.reason)));
      },
    });
    link.start();
    const started = Date.now();
    await link.stop();
    expect(Date.now() - started).toBeLessThan(100);
    expect(seen?.aborted).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    expect(clients).toHaveLength(0);
  });

  it('stop() while connected closes the client', async () => {
    const { link, clients } = await connectedLink([{}]);
    await link.stop();
    expect(link.connected).toBe(false);
    expect(clients[0].closed).toBe(true);
    expect(await link.updateReported({ late: true })).toBe(false);
  });
});

/** A loopback HTTP CONNECT proxy that records each tunnel it opens. */
async function startConnectProxy(): Promise<{ url: string; tunnels: string[]; close(): Promise<void> }> {
  const tunnels: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createHttpServer((_req, res) => res.writeHead(405).end());
  server.on('connect', (req, client: Socket, head: Buffer) => {
    tunnels.push(req.url ?? '');
    sockets.add(client);
    const target = new URL(`http://${req.url}`);
    const upstream = netConnect(Number(target.port), target.hostname === 'localhost' ? '127.0.0.1' : target.hostname, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    sockets.add(upstream);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    tunnels,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

describe('HubLink with the device SDK against the emulator', () => {
  const suite = hubForSuite();
  afterAll(async () => {
    await Promise.all(links.splice(0).map((l) => l.stop()));
  });
  /** Over WebSockets the emulator is reached on its HTTPS port, as IoT Hub on 443. */
  const overWebSockets = (cs: string) => cs.replace(`:${suite.hub.info.mqttPort};`, `:${suite.hub.info.httpsPort};`);

  it('connects over MQTT over WebSockets through an HTTP CONNECT proxy: twin, reported properties, a direct method', async () => {
    const proxy = await startConnectProxy();
    try {
      const cs = overWebSockets(await addDevice(suite.dir, 'link-ws'));
      let reads = 0;
      const link = new HubLink({ connectionString: cs, ca: suite.ca, transport: 'mqtt-ws', proxy: proxy.url, logger, waitForPlausibleClock: async () => undefined });
      links.push(link);
      link.handleMethods({ firmwareUpdate: async (payload) => ({ status: 200, payload: { got: payload } }) });
      link.on('twinRead', () => reads++);
      link.start();
      await eventually(() => reads === 1, 10_000, 'the twin read over wss');
      expect(proxy.tunnels).toEqual([`localhost:${suite.hub.info.httpsPort}`]);
      expect(await link.updateReported({ through: 'proxy' })).toBe(true);
      const { responseBody } = await serviceRegistry(suite.hub.info).getTwin('link-ws');
      expect(responseBody.properties.reported.through).toBe('proxy');
      const { result } = await serviceClient(suite.hub.info).invokeDeviceMethod('link-ws', { methodName: 'firmwareUpdate', payload: { v: 1 }, responseTimeoutInSeconds: 10 });
      expect(result).toEqual({ status: 200, payload: { got: { v: 1 } } });
      const started = Date.now();
      await link.stop();
      expect(Date.now() - started).toBeLessThan(1200);
      await eventually(() => !suite.hub.connectedDevices().includes('link-ws'), 3000, 'the device to disconnect');
    } finally {
      await proxy.close();
    }
  }, 30_000);

  it.each(['mqtt', 'mqtt-ws'] as const)('over %s with a private CA, one connection stays up: no feature reported lost, no rebuild, methods answered', async (transport) => {
    const id = `link-steady-${transport}`;
    const added = await addDevice(suite.dir, id);
    const cs = transport === 'mqtt-ws' ? overWebSockets(added) : added;
    const warnings: string[] = [];
    const seen = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line).msg) });
    let reads = 0;
    const link = new HubLink({ connectionString: cs, ca: suite.ca, transport, proxy: null, logger: seen, waitForPlausibleClock: async () => undefined });
    links.push(link);
    link.handleMethods({ firmwareUpdate: async () => ({ status: 200, payload: { ok: true } }) });
    link.on('twinRead', () => reads++);
    link.start();
    await eventually(() => reads === 1, 10_000, 'the twin read');
    // A rebuild for a feature reported lost comes 0.5 to 1 s after the report.
    await new Promise((r) => setTimeout(r, 2500));
    expect(warnings).toEqual([]);
    expect(reads).toBe(1);
    const { result } = await serviceClient(suite.hub.info).invokeDeviceMethod(id, { methodName: 'firmwareUpdate', payload: {}, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 0 });
    expect(result).toEqual({ status: 200, payload: { ok: true } });
    await link.stop();
  }, 30_000);

  it("the SDK's twin: 'desired' carries the whole desired document on connect and the merged one after a service patch", async () => {
    const cs = await addDevice(suite.dir, 'link-desired');
    const registry = serviceRegistry(suite.hub.info);
    await registry.updateTwin('link-desired', { properties: { desired: { piota: { firmware: { id: 'r1', version: '2.0.0' } }, other: 1 } } }, '*');
    const seen: Record<string, any>[] = [];
    const link = new HubLink({ connectionString: cs, ca: suite.ca, logger, waitForPlausibleClock: async () => undefined });
    links.push(link);
    link.on('desired', (d) => seen.push(d));
    link.start();
    await eventually(() => seen.length >= 1, 10_000, 'the desired document');
    expect(seen[0]).toMatchObject({ piota: { firmware: { id: 'r1', version: '2.0.0' } }, other: 1 });
    await registry.updateTwin('link-desired', { properties: { desired: { piota: { firmware: { id: 'r2' } } } } }, '*');
    await eventually(() => seen.at(-1)?.piota?.firmware?.id === 'r2', 10_000, 'the patched document');
    // Merged: what the patch left out is still there.
    expect(seen.at(-1)).toMatchObject({ piota: { firmware: { id: 'r2', version: '2.0.0' } }, other: 1 });
    await link.stop();
  }, 30_000);

  it('stop() stays bounded with the real SDK in the middle of a TLS handshake that never completes', async () => {
    // A TCP listener that accepts and never speaks: the TLS handshake, and so the SDK's open and close, hang.
    const held = new Set<Socket>();
    const silent = createNetServer((s) => held.add(s));
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    try {
      const key = /SharedAccessKey=([^;]+)/.exec(await addDevice(suite.dir, 'link-stuck'))![1];
      const cs = `HostName=127.0.0.1:${(silent.address() as AddressInfo).port};DeviceId=link-stuck;SharedAccessKey=${key}`;
      const link = new HubLink({ connectionString: cs, ca: suite.ca, logger, waitForPlausibleClock: async () => undefined });
      links.push(link);
      link.start();
      await eventually(() => held.size === 1, 5000, 'the SDK to connect');
      const started = Date.now();
      await within(link.stop(), 3000, 'stop()');
      expect(Date.now() - started).toBeLessThan(1300);
    } finally {
      for (const s of held) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  }, 15_000);
});
