import type { AuthenticateError, AuthorizePublishHandler, AuthorizeSubscribeHandler, AuthenticateHandler, Client } from 'aedes';
import { deviceErrorBody, HubError } from './errors.js';
import { topics, type DeviceLink, type HubCore } from './hub-core.js';
import { parseSasToken, SasError, verifySasToken } from './sas.js';
import type { Throttle } from './throttle.js';
import { deviceTwinView, isObject, type JsonObject } from './twin.js';

/** IoT Hub's device-to-cloud message limit. */
export const TELEMETRY_LIMIT = 256 * 1024;

/** MQTT CONNACK return codes (aedes' AuthErrorCode is a const enum, unusable across modules). */
const IDENTIFIER_REJECTED = 2;
const BAD_USERNAME_OR_PASSWORD = 4;
const NOT_AUTHORIZED = 5;

function authError(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

/** `<host>/<deviceId>/?api-version=...`: the device id the client claims. */
function usernameDevice(username: string): { host: string; deviceId: string } | undefined {
  const parts = username.split('/');
  if (parts.length < 3 || !parts[2].startsWith('?') || parts[0] === '' || parts[1] === '') return undefined;
  return { host: parts[0], deviceId: parts[1] };
}

/** Splits `a/b/?$rid=1&$version=2` into the path and its query parameters. */
function splitTopic(topic: string): { path: string; query: URLSearchParams } {
  const q = topic.indexOf('?');
  return q < 0 ? { path: topic, query: new URLSearchParams() } : { path: topic.slice(0, q), query: new URLSearchParams(topic.slice(q + 1)) };
}

/** A QoS 0 publish to this one client (aedes needs the callback; a write error ends that client only). */
function sendTo(client: Client, topic: string, payload: string): void {
  client.publish({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 0, retain: false, dup: false }, () => undefined);
}

interface Options {
  core: HubCore;
  /** Counts device-side operations against the tier; twin operations wait their turn (IoT Hub shapes them). */
  throttle?: Throttle;
  /** Host names a token's resource may name (the hub's host, with or without a port). */
  hostNames: readonly string[];
  log(message: string): void;
}

/**
 * IoT Hub's MQTT device protocol on top of aedes: SAS authentication, the allowed topics, twin
 * GET/PATCH, direct-method answers and telemetry. Everything the hub sends goes to one client
 * with `client.publish`, never broker-wide.
 */
export class DeviceProtocol {
  private readonly links = new Map<Client, DeviceLink>();
  private readonly expiryTimers = new Map<Client, NodeJS.Timeout>();

  constructor(private readonly options: Options) {}

  private get core(): HubCore {
    return this.options.core;
  }

  private resourceMatches(resource: string, deviceId: string): boolean {
    const r = resource.replace(/\/+$/, '');
    const slash = r.indexOf('/');
    if (slash < 0) return false;
    const host = r.slice(0, slash).toLowerCase().replace(/:\d+$/, '');
    return this.options.hostNames.includes(host) && r.slice(slash) === `/devices/${deviceId}`;
  }

  readonly authenticate: AuthenticateHandler = (client, username, password, done) => {
    const claimed = username ? usernameDevice(username) : undefined;
    if (!claimed) return done(authError(`malformed username '${username ?? ''}'`, BAD_USERNAME_OR_PASSWORD), false);
    if (claimed.deviceId !== client.id) {
      return done(authError(`client id '${client.id}' does not match the username's device '${claimed.deviceId}'`, IDENTIFIER_REJECTED), false);
    }
    if (!password) return done(authError('no SAS token (X.509 authentication is not emulated)', NOT_AUTHORIZED), false);
    const deviceId = claimed.deviceId;
    this.core.store.find(deviceId).then(
      (record) => {
        try {
          if (!record) throw new SasError(`device ${deviceId} is not registered`);
          if (record.status !== 'enabled') throw new SasError(`device ${deviceId} is disabled`);
          const token = parseSasToken(password.toString('utf8'));
          if (!this.resourceMatches(token.resource, deviceId)) throw new SasError(`token resource '${token.resource}' is not this device`);
          verifySasToken(token, [record.primaryKey, record.secondaryKey]);
          this.scheduleExpiry(client, token.expiry);
          done(null, true);
        } catch (err) {
          this.options.log(`refused ${deviceId}: ${(err as Error).message}`);
          done(authError((err as Error).message, NOT_AUTHORIZED), false);
        }
      },
      (err: Error) => done(authError(err.message, NOT_AUTHORIZED), false),
    );
  };

  /** IoT Hub drops a connection when its token expires; the SDK renews its token before then. */
  private scheduleExpiry(client: Client, expiry: number): void {
    const ms = expiry * 1000 - Date.now();
    if (ms > 2 ** 31 - 1) return; // far future (setTimeout cannot wait that long)
    const timer = setTimeout(() => {
      this.expiryTimers.delete(client);
      client.close();
    }, ms);
    timer.unref();
    this.expiryTimers.set(client, timer);
  }

  /** A device that completed CONNECT: it is now reachable through its own client only. */
  clientReady(client: Client): void {
    this.options.throttle?.note('newConnections');
    const link: DeviceLink = {
      send: (topic, payload) => sendTo(client, topic, payload),
      close: () => client.close(),
    };
    this.links.set(client, link);
    this.options.log(`device ${client.id} connected${client.clean ? ' (clean session)' : ''}`);
    this.core.sessions.connected(client.id, client.clean);
    this.core.attach(client.id, link);
    this.core.subscriptionsChanged(client.id);
  }

  clientDisconnect(client: Client): void {
    const timer = this.expiryTimers.get(client);
    if (timer) clearTimeout(timer);
    this.expiryTimers.delete(client);
    const link = this.links.get(client);
    this.links.delete(client);
    if (!link) return;
    this.options.log(`device ${client.id} disconnected`);
    // The core may have detached it already (a forced disconnect); a takeover's new link stays attached.
    this.core.detach(client.id, link);
    if (!this.core.isConnected(client.id)) this.core.sessions.disconnected(client.id, client.clean);
  }

  subscribed(client: Client, subs: Array<{ topic: string; qos: number }>): void {
    // aedes reports refused subscriptions too, with qos 128: they are not part of the session.
    const granted = subs.filter((s) => s.qos !== 128).map((s) => ({ topic: s.topic, qos: s.qos }));
    this.core.sessions.subscribed(client.id, granted);
    this.core.subscriptionsChanged(client.id);
  }

  unsubscribed(client: Client, unsubs: string[]): void {
    this.core.sessions.unsubscribed(client.id, unsubs);
  }

  readonly authorizeSubscribe: AuthorizeSubscribeHandler = (client, sub, done) => {
    const allowed = [topics.twinResponses, topics.desiredUpdates, topics.methods, topics.cloudToDevice(client.id)];
    if (allowed.includes(sub.topic)) return done(null, { ...sub, qos: Math.min(sub.qos, 1) as 0 | 1 });
    this.options.log(`refused subscription of ${client.id} to '${sub.topic}'`);
    done(null, null); // SUBACK failure (0x80), as IoT Hub answers a topic it does not offer
  };

  readonly authorizePublish: AuthorizePublishHandler = (client, packet, done) => {
    if (!client) return done(new Error('publishing without a client is not allowed'));
    packet.retain = false; // IoT Hub keeps no retained messages
    const { path, query } = splitTopic(packet.topic);
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload ?? '');
    const id = client.id;
    if (path.startsWith(`devices/${id}/messages/events/`) || path === `devices/${id}/messages/events`) {
      if (payload.length > TELEMETRY_LIMIT) return done(new Error(`message of ${payload.length} bytes is over the ${TELEMETRY_LIMIT} byte limit`));
      this.core.countTelemetry(id);
      this.options.throttle?.note('deviceToCloud');
      return done(null);
    }
    const rid = query.get('$rid');
    if (path === '$iothub/twin/GET/' && rid) {
      this.twinGet(client, rid);
      return done(null);
    }
    if (path === '$iothub/twin/PATCH/properties/reported/' && rid) {
      this.reportedPatch(client, rid, payload);
      return done(null);
    }
    const method = /^\$iothub\/methods\/res\/(\d{3})\/$/.exec(path);
    if (method && rid) {
      this.core.methodResponse(id, rid, Number(method[1]), payload);
      return done(null);
    }
    this.options.log(`closing ${id}: publish to '${packet.topic}' is not part of IoT Hub's device protocol`);
    done(new Error(`topic '${packet.topic}' is not allowed`));
  };

  private answerTwin(client: Client, rid: string, status: number, body: string, extra = ''): void {
    if (!this.core.sessions.has(client.id, topics.twinResponses)) return; // IoT Hub answers subscribers only
    sendTo(client, `$iothub/twin/res/${status}/?$rid=${rid}${extra}`, body);
  }

  private answerTwinError(client: Client, rid: string, err: unknown): void {
    const hubErr = err instanceof HubError ? err : new HubError('ServerError', (err as Error).message);
    this.answerTwin(client, rid, hubErr.status, deviceErrorBody(hubErr));
  }

  private twinGet(client: Client, rid: string): void {
    this.turn('twinReads')
      .then(() => this.core.store.find(client.id))
      .then(
      (record) => {
        if (!record) return this.answerTwinError(client, rid, new HubError('DeviceNotFound', `Device ${client.id} not registered`));
        this.core.touched(client.id);
        this.answerTwin(client, rid, 200, JSON.stringify(deviceTwinView(record.twin)));
      },
      (err) => this.answerTwinError(client, rid, err),
    );
  }

  private reportedPatch(client: Client, rid: string, payload: Buffer): void {
    let patch: JsonObject;
    try {
      const parsed: unknown = JSON.parse(payload.toString('utf8'));
      if (!isObject(parsed)) throw new Error('not an object');
      patch = parsed;
    } catch {
      return this.answerTwinError(client, rid, new HubError('ArgumentInvalid', 'reported properties must be a JSON object'));
    }
    this.turn('twinUpdates')
      .then(() => this.core.reportedPatch(client.id, patch))
      .then(
      (version) => this.answerTwin(client, rid, 204, '', `&$version=${version}`),
      (err) => this.answerTwinError(client, rid, err),
    );
  }

  private turn(category: 'twinReads' | 'twinUpdates'): Promise<void> {
    return this.options.throttle ? this.options.throttle.acquire(category) : Promise.resolve();
  }

  /** Stops the token-expiry timers (the broker closes the clients). */
  close(): void {
    for (const t of this.expiryTimers.values()) clearTimeout(t);
    this.expiryTimers.clear();
  }
}
