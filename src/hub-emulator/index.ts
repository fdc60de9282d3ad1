import type { IncomingMessage } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { mkdir, readFile } from 'node:fs/promises';
import type { AddressInfo, Socket } from 'node:net';
import type { EventEmitter } from 'node:events';
import { join, resolve } from 'node:path';
import { Aedes } from 'aedes';
import { writeFileDurably } from '../os/durable-file.js';
import { readStateFile, writeStateFile } from '../os/state-file.js';
import { ensureCertificates } from './certificates.js';
import { GuardedConnection } from './connection-guard.js';
import { checkDeviceId, newDeviceRecord, serviceTwinView } from './device-record.js';
import { DeviceProtocol } from './device-protocol.js';
import { HubError } from './errors.js';
import { HubCore } from './hub-core.js';
import { generateKey } from './sas.js';
import { ServiceApi, type ServicePolicy } from './service-api.js';
import { SessionStore } from './sessions.js';
import { DeviceStore, readDeviceFile, writeDeviceFile } from './store.js';
import { ConfigurationManager } from './configurations.js';
import { JobManager } from './jobs.js';
import { Throttle, type Tier } from './throttle.js';
import type { JsonObject } from './twin.js';
import { acceptMqttWebSocket } from './websocket.js';

export interface HubOptions {
  dir: string;
  host?: string;
  mqttPort?: number;
  /** The service REST API, and MQTT over WebSockets at /$iothub/websocket (IoT Hub serves both on 443). */
  httpsPort?: number;
  /** Address to listen on; default 127.0.0.1 for a loopback host, else every interface. */
  listenAddress?: string;
  /** Where the hub writes one line per notable event (refused connections...); silent by default. */
  log?: (message: string) => void;
  /** IoT Hub's throttles for this tier (and `units` units of it); none by default. */
  tier?: Tier;
  units?: number;
}

/** The contents of DIR/hub.json. */
export interface HubInfo {
  serviceConnectionString: string;
  caFile: string;
  host: string;
  mqttPort: number;
  httpsPort: number;
}

export interface RunningHub {
  info: HubInfo;
  /** Stops listening, disconnects every device, stops every timer, and waits for state on disk. */
  close(): Promise<void>;
  /** Ids of the devices connected now. */
  connectedDevices(): string[];
  /** Device-to-cloud messages received from a device since this hub started. */
  telemetryCount(deviceId: string): number;
  /** Drops a device's connection as a network failure would (its session is kept); false if it was not connected. */
  disconnectDevice(deviceId: string): boolean;
  /** Requests per throttling category, admitted and throttled (what GET /emulator/stats answers). */
  stats(): JsonObject;
}

/** Defaults: unprivileged ports next to IoT Hub's own (8883, 443). */
export const DEFAULT_HOST = 'localhost';
export const DEFAULT_MQTT_PORT = 18883;
export const DEFAULT_HTTPS_PORT = 18443;
const POLICY_NAME = 'iothubowner';
const STATE_SCHEMA = 1;

export function hubJsonPath(dir: string): string {
  return join(dir, 'hub.json');
}

/** Reads DIR/hub.json, or undefined if the hub has never started there. */
export async function readHubInfo(dir: string): Promise<HubInfo | undefined> {
  let text: string;
  try {
    text = await readFile(hubJsonPath(dir), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let info: Partial<HubInfo>;
  try {
    info = JSON.parse(text) as Partial<HubInfo>;
  } catch (err) {
    throw new Error(`${hubJsonPath(dir)}: not valid JSON (${(err as Error).message})`);
  }
  if (typeof info !== 'object' || info === null) throw new Error(`${hubJsonPath(dir)}: expected an object`);
  for (const field of ['serviceConnectionString', 'caFile', 'host'] as const) {
    if (typeof info[field] !== 'string') throw new Error(`${hubJsonPath(dir)}: field '${field}' must be a string`);
  }
  for (const field of ['mqttPort', 'httpsPort'] as const) {
    if (typeof info[field] !== 'number') throw new Error(`${hubJsonPath(dir)}: field '${field}' must be a number`);
  }
  return info as HubInfo;
}

async function loadPolicy(dir: string): Promise<ServicePolicy> {
  const file = join(dir, 'hub-state.json');
  const saved = await readStateFile(file, STATE_SCHEMA, (data) => {
    const p = (data as { policy?: ServicePolicy })?.policy;
    if (!p || typeof p.primaryKey !== 'string' || typeof p.secondaryKey !== 'string') throw new Error("field 'policy' must hold primaryKey and secondaryKey");
    return { name: POLICY_NAME, primaryKey: p.primaryKey, secondaryKey: p.secondaryKey };
  });
  if (saved) return saved;
  const policy = { name: POLICY_NAME, primaryKey: generateKey(), secondaryKey: generateKey() };
  await writeStateFile(file, STATE_SCHEMA, { policy }, { mode: 0o600, mkdirs: true });
  return policy;
}

/** Loopback hosts are served on 127.0.0.1 only; any other host name on every interface (real Pis on a LAN). */
function bindAddress(host: string): string {
  return ['localhost', '127.0.0.1', '::1'].includes(host.toLowerCase()) ? '127.0.0.1' : '0.0.0.0';
}

function listen(server: TlsServer | HttpsServer, port: number, address: string): Promise<number> {
  return new Promise((ok, fail) => {
    const onError = (err: NodeJS.ErrnoException) => {
      fail(new Error(err.code === 'EADDRINUSE' ? `port ${port} on ${address} is already in use` : err.message));
    };
    server.once('error', onError);
    server.listen(port, address, () => {
      server.off('error', onError);
      ok((server.address() as AddressInfo).port);
    });
  });
}

function closeServer(server: TlsServer | HttpsServer): Promise<void> {
  return new Promise((ok) => server.close(() => ok()));
}

/** Starts the emulator on DIR: loads (or creates) its CA, policy key, registry and sessions, and writes hub.json. */
export async function startHub(options: HubOptions): Promise<RunningHub> {
  const dir = resolve(options.dir);
  const host = options.host ?? DEFAULT_HOST;
  const log = options.log ?? (() => undefined);
  await mkdir(dir, { recursive: true });
  const policy = await loadPolicy(dir);
  const certs = await ensureCertificates(dir, host);
  const store = await DeviceStore.open(dir, log);
  const sessions = await SessionStore.open(dir);
  const core = new HubCore(store, sessions);
  const hostNames = [...new Set([host.toLowerCase(), 'localhost', '127.0.0.1'])];
  const throttle = new Throttle(options.tier, options.units ?? 1);
  const protocol = new DeviceProtocol({ core, hostNames, log, throttle });
  const plainTwins = async () =>
    (await store.all()).sort((a, b) => (a.deviceId < b.deviceId ? -1 : 1)).map((r) => serviceTwinView(r, core.presenceOf(r.deviceId)));
  const configurations = await ConfigurationManager.open({ core, dir, tier: options.tier, twins: plainTwins, log });
  const twins = async () =>
    (await plainTwins()).map((t) => {
      const c = configurations.ofDevice(t.deviceId as string);
      return c ? { ...t, configurations: c } : t;
    });
  const jobs = await JobManager.open({ core, dir, throttle, twins, twinChanged: (id) => configurations.twinChanged(id), log });
  const api = new ServiceApi({ core, policy, hostNames, log, jobs, configurations, throttle, twins });

  const broker = await Aedes.createBroker({
    authenticate: protocol.authenticate,
    authorizeSubscribe: protocol.authorizeSubscribe,
    authorizePublish: protocol.authorizePublish,
    // Device ids may be up to 128 characters (the MQTT 3.1 limit of 23 does not apply to 3.1.1).
    maxClientsIdLength: 128,
    concurrency: 1000,
  });
  broker.on('clientReady', (client) => {
    // From here on the connection is a device's: only the per-packet limit applies.
    if (client.conn instanceof GuardedConnection) client.conn.accepted(client.id);
    protocol.clientReady(client);
  });
  broker.on('clientDisconnect', (client) => protocol.clientDisconnect(client));
  broker.on('subscribe', (subs, client) => protocol.subscribed(client, subs));
  broker.on('unsubscribe', (unsubs, client) => protocol.unsubscribed(client, unsubs));
  broker.on('clientError', (client, err) => log(`device ${client?.id}: ${err.message}`));
  broker.on('connectionError', (_client, err) => log(`connection: ${err.message}`));
  (broker as unknown as EventEmitter).on('error', (err: Error) => log(`broker: ${err.message}`));
  // Persistent sessions survive a restart of the hub: give them back to the broker so the device
  // sees sessionPresent and its twin subscriptions still hold.
  const persistence = (broker as unknown as { persistence: { addSubscriptions(c: { id: string }, s: unknown[]): Promise<void> } }).persistence;
  for (const { clientId, subscriptions } of sessions.saved()) {
    if (subscriptions.length > 0) await persistence.addSubscriptions({ id: clientId }, subscriptions);
  }

  // Every device connection reaches the broker through the inbound limits (connection-guard.ts).
  const mqttServer = createTlsServer({ key: certs.serverKeyPem, cert: certs.serverCertPem }, (socket) => {
    broker.handle(new GuardedConnection(socket, `${socket.remoteAddress}:${socket.remotePort}`, log));
  });
  mqttServer.on('tlsClientError', (err) => log(`TLS: ${err.message}`));
  // Sockets still in their TLS handshake or before CONNECT are not aedes clients yet, and upgraded
  // WebSockets are no longer the HTTPS server's: track them all so close() can end them rather
  // than wait for their timeouts.
  const sockets = new Set<Socket>();
  const track = (socket: Socket) => {
    // As IoT Hub's front ends do: no Nagle delay. aedes writes a packet's header and payload
    // separately, and Nagle holding the second write for the device's delayed ACK adds some 40 ms to
    // every direct method (docs/benchmarks.md).
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  };
  mqttServer.on('connection', track);
  const httpsServer = createHttpsServer({ key: certs.serverKeyPem, cert: certs.serverCertPem }, api.handle);
  httpsServer.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    track(socket);
    const ws = acceptMqttWebSocket(req, socket, head, log);
    if (ws) broker.handle(new GuardedConnection(ws, `${socket.remoteAddress}:${socket.remotePort} (WebSocket)`, log), req);
  });
  httpsServer.on('tlsClientError', (err) => log(`TLS: ${err.message}`));
  const address = options.listenAddress ?? bindAddress(host);
  let mqttPort: number;
  let httpsPort: number;
  try {
    mqttPort = await listen(mqttServer, options.mqttPort ?? DEFAULT_MQTT_PORT, address);
    httpsPort = await listen(httpsServer, options.httpsPort ?? DEFAULT_HTTPS_PORT, address);
  } catch (err) {
    mqttServer.close();
    httpsServer.close();
    await new Promise<void>((ok) => broker.close(() => ok()));
    throw err;
  }

  // After start-up, a server error (say, out of file descriptors) is logged, never fatal.
  mqttServer.on('error', (err) => log(`MQTT server: ${err.message}`));
  httpsServer.on('error', (err) => log(`HTTPS server: ${err.message}`));

  const info: HubInfo = {
    serviceConnectionString: `HostName=${host};SharedAccessKeyName=${policy.name};SharedAccessKey=${policy.primaryKey}`,
    caFile: certs.caFile,
    host,
    mqttPort,
    httpsPort,
  };
  await writeFileDurably(hubJsonPath(dir), JSON.stringify(info, null, 2) + '\n', { mode: 0o600 });

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      core.close();
      protocol.close();
      throttle.close();
      await jobs.close();
      await configurations.close();
      const stopped = Promise.all([closeServer(mqttServer), closeServer(httpsServer)]);
      httpsServer.closeAllConnections();
      await new Promise<void>((ok) => broker.close(() => ok()));
      for (const socket of sockets) socket.destroy();
      await stopped;
      await store.flush();
      await sessions.flush();
    })());

  return {
    info,
    close,
    connectedDevices: () => core.connectedDevices(),
    telemetryCount: (id) => core.telemetryCount(id),
    stats: () => throttle.stats(),
    disconnectDevice: (id) => {
      if (!core.isConnected(id)) return false;
      core.disconnect(id);
      return true;
    },
  };
}

/** `HostName=<host>:<mqttPort>;DeviceId=..;SharedAccessKey=..` for the device SDK. */
export function deviceConnectionString(info: Pick<HubInfo, 'host' | 'mqttPort'>, deviceId: string, key: string): string {
  return `HostName=${info.host}:${info.mqttPort};DeviceId=${deviceId};SharedAccessKey=${key}`;
}

/**
 * Registers a device in DIR (or finds it, if it exists) and returns its connection string. Works
 * whether the hub runs or not: the device's file is written in DIR/devices, and a running hub reads
 * it the first time it meets that id. Before the hub has ever started in DIR, the connection string
 * names the default host and MQTT port.
 */
export async function addDevice(dir: string, deviceId: string): Promise<string> {
  try {
    checkDeviceId(deviceId);
  } catch (err) {
    throw new Error((err as HubError).message);
  }
  const info = (await readHubInfo(dir)) ?? { host: DEFAULT_HOST, mqttPort: DEFAULT_MQTT_PORT };
  const existing = await readDeviceFile(dir, deviceId);
  if (existing) return deviceConnectionString(info, deviceId, existing.primaryKey);
  const record = newDeviceRecord(deviceId);
  await writeDeviceFile(dir, record);
  return deviceConnectionString(info, deviceId, record.primaryKey);
}
