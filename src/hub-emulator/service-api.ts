import type { IncomingMessage, ServerResponse } from 'node:http';
import { HubError, restErrorBody } from './errors.js';
import { identityEtag, identityView, newDeviceRecord, serviceTwinView, checkDeviceId, type DeviceRecord } from './device-record.js';
import { METHOD_PAYLOAD_LIMIT, type HubCore } from './hub-core.js';
import { parseQuery } from './query.js';
import { parseSasToken, SasError, verifySasToken } from './sas.js';
import { twinEtag, isObject, type Json, type JsonObject } from './twin.js';

/** Largest request body read (a desired patch, a method payload and some JSON around them). */
const BODY_LIMIT = 256 * 1024;

export interface ServicePolicy {
  name: string;
  primaryKey: string;
  secondaryKey: string;
}

interface Options {
  core: HubCore;
  policy: ServicePolicy;
  /** Host names a token's resource may name. */
  hostNames: readonly string[];
  log(message: string): void;
}

interface Reply {
  status: number;
  body?: Json;
  headers?: Record<string, string>;
}

function unquote(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  return v.length >= 2 && v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > BODY_LIMIT) throw new HubError('RequestEntityTooLarge', `request body over ${BODY_LIMIT} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** The JSON body, or undefined when the request carries none; bodies count only as application/json. */
async function jsonBody(req: IncomingMessage): Promise<Json | undefined> {
  const raw = await readBody(req);
  if (raw.length === 0) return undefined;
  if (!(req.headers['content-type'] ?? '').includes('application/json')) {
    throw new HubError('UnsupportedMediaType', 'the request body must be sent as Content-Type: application/json');
  }
  try {
    return JSON.parse(raw.toString('utf8')) as Json;
  } catch (err) {
    throw new HubError('ArgumentInvalid', `the request body is not valid JSON (${(err as Error).message})`);
  }
}

function requireObject(body: Json | undefined, what: string): JsonObject {
  if (!isObject(body)) throw new HubError('ArgumentInvalid', `${what}: expected a JSON object body`);
  return body;
}

function seconds(value: Json | undefined, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new HubError('ArgumentInvalid', `${name} must be a whole number of seconds from ${min} to ${max}`);
  }
  return value;
}

/**
 * IoT Hub's service REST API, the part azure-iothub's Registry and Client use: registry,
 * twins, direct methods and the device query. Every call needs the policy's SAS token.
 */
export class ServiceApi {
  constructor(private readonly options: Options) {}

  private get core(): HubCore {
    return this.options.core;
  }

  /** The request handler for an https server. Never throws: every failure is an IoT Hub error body. */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    this.route(req).then(
      (reply) => this.send(res, reply),
      (err: unknown) => {
        const hubErr = err instanceof HubError ? err : new HubError('ServerError', (err as Error)?.message ?? String(err));
        if (!(err instanceof HubError)) this.options.log(`service API error: ${(err as Error)?.stack ?? err}`);
        this.send(res, { status: hubErr.status, body: undefined }, restErrorBody(hubErr));
      },
    );
  };

  private send(res: ServerResponse, reply: Reply, rawBody?: string): void {
    if (res.headersSent || res.destroyed) return;
    const text = rawBody ?? (reply.body === undefined ? '' : JSON.stringify(reply.body));
    res.writeHead(reply.status, {
      ...(text ? { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) } : { 'Content-Length': 0 }),
      ...reply.headers,
    });
    res.end(text);
  }

  private authorize(req: IncomingMessage): void {
    const header = req.headers.authorization;
    const refuse = (why: string) => {
      this.options.log(`refused service call ${req.method} ${req.url}: ${why}`);
      return new HubError('IotHubUnauthorizedAccess', 'Unauthorized');
    };
    if (!header) throw refuse('no Authorization header');
    let token;
    try {
      token = parseSasToken(header);
    } catch (err) {
      throw refuse((err as Error).message);
    }
    const { policy, hostNames } = this.options;
    if (token.keyName !== policy.name) throw refuse(`unknown policy '${token.keyName ?? ''}'`);
    const host = token.resource.toLowerCase().split('/')[0].replace(/:\d+$/, '');
    if (!hostNames.includes(host)) throw refuse(`token resource '${token.resource}' is not this hub`);
    try {
      verifySasToken(token, [policy.primaryKey, policy.secondaryKey]);
    } catch (err) {
      if (err instanceof SasError) throw refuse(err.message);
      throw err;
    }
  }

  private async route(req: IncomingMessage): Promise<Reply> {
    const url = new URL(req.url ?? '/', 'https://hub.invalid');
    this.authorize(req);
    if (!url.searchParams.get('api-version')) throw new HubError('BadRequest', 'api-version is required');
    const parts = url.pathname.split('/').filter((p) => p !== '').map((p) => decodeURIComponent(p));
    const method = req.method ?? 'GET';
    const ifMatch = unquote(req.headers['if-match'] as string | undefined);

    if (parts[0] === 'devices' && parts.length === 2 && parts[1] === 'query' && method === 'POST') {
      return this.query(req, await jsonBody(req));
    }
    if (parts[0] === 'devices' && parts.length === 1 && method === 'GET') {
      const all = await this.core.store.all();
      return { status: 200, body: all.map((r) => identityView(r, this.core.presenceOf(r.deviceId))) };
    }
    if (parts[0] === 'devices' && parts.length === 2) {
      const id = parts[1];
      if (method === 'GET') return { status: 200, body: identityView(await this.device(id), this.core.presenceOf(id)) };
      if (method === 'PUT') return this.putDevice(id, await jsonBody(req), ifMatch);
      if (method === 'DELETE') return this.deleteDevice(id, ifMatch);
      throw new HubError('MethodNotAllowed', `${method} is not supported on /devices/{id}`);
    }
    if (parts[0] === 'twins' && parts.length === 2) {
      const id = parts[1];
      if (method === 'GET') return { status: 200, body: serviceTwinView(await this.device(id), this.core.presenceOf(id)) };
      if (method === 'PATCH' || method === 'PUT') return this.patchTwin(id, await jsonBody(req), ifMatch, method === 'PUT');
      throw new HubError('MethodNotAllowed', `${method} is not supported on /twins/{id}`);
    }
    if (parts[0] === 'twins' && parts.length === 3 && parts[2] === 'methods' && method === 'POST') {
      return this.invoke(parts[1], await jsonBody(req));
    }
    throw new HubError('NotFound', `${method} ${url.pathname} is not part of the emulated API`);
  }

  private async device(id: string): Promise<DeviceRecord> {
    const record = await this.core.store.find(id);
    if (!record) throw new HubError('DeviceNotFound', `Device ${id} not registered`);
    return record;
  }

  private async putDevice(id: string, body: Json | undefined, ifMatch: string | undefined): Promise<Reply> {
    checkDeviceId(id);
    const spec = requireObject(body, 'device');
    if (spec.deviceId !== undefined && spec.deviceId !== id) {
      throw new HubError('ArgumentInvalid', `deviceId '${String(spec.deviceId)}' in the body does not match '${id}' in the path`);
    }
    if (spec.status !== undefined && spec.status !== 'enabled' && spec.status !== 'disabled') {
      throw new HubError('ArgumentInvalid', "status must be 'enabled' or 'disabled'");
    }
    const auth = spec.authentication;
    if (auth !== undefined && auth !== null && !isObject(auth)) throw new HubError('ArgumentInvalid', 'authentication must be an object');
    if (isObject(auth) && auth.type !== undefined && auth.type !== 'sas') {
      throw new HubError('ArgumentInvalid', `authentication type '${String(auth.type)}' is not emulated (sas only)`);
    }
    const sym = isObject(auth) && isObject(auth.symmetricKey) ? auth.symmetricKey : {};
    const key = (name: 'primaryKey' | 'secondaryKey'): string | undefined => {
      const v = sym[name];
      if (v === undefined || v === null || v === '') return undefined;
      if (typeof v !== 'string' || Buffer.from(v, 'base64').length < 16 || Buffer.from(v, 'base64').length > 64) {
        throw new HubError('ArgumentInvalid', `${name} must be base64 of 16 to 64 bytes`);
      }
      return v;
    };
    const status = (spec.status as 'enabled' | 'disabled' | undefined) ?? 'enabled';
    const existing = await this.core.store.find(id);
    if (!existing) {
      if (ifMatch !== undefined && ifMatch !== '*') throw new HubError('DeviceNotFound', `Device ${id} not registered`);
      const record = newDeviceRecord(id, { primaryKey: key('primaryKey'), secondaryKey: key('secondaryKey') }, status);
      await this.core.store.put(record);
      return { status: 200, body: identityView(record, this.core.presenceOf(id)) };
    }
    if (ifMatch === undefined) throw new HubError('DeviceAlreadyExists', `A device with ID '${id}' is already registered`);
    if (ifMatch !== '*' && ifMatch !== identityEtag(existing)) throw new HubError('PreconditionFailed', `etag ${ifMatch} does not match the device's`);
    const updated: DeviceRecord = {
      ...existing,
      identityVersion: existing.identityVersion + 1,
      status,
      statusReason: typeof spec.statusReason === 'string' ? spec.statusReason : existing.statusReason,
      statusUpdatedTime: status !== existing.status ? new Date().toISOString() : existing.statusUpdatedTime,
      primaryKey: key('primaryKey') ?? existing.primaryKey,
      secondaryKey: key('secondaryKey') ?? existing.secondaryKey,
    };
    await this.core.store.put(updated);
    // IoT Hub drops a device's connection when it is disabled or its keys change.
    if (updated.status === 'disabled' || updated.primaryKey !== existing.primaryKey || updated.secondaryKey !== existing.secondaryKey) {
      this.core.disconnect(id);
    }
    return { status: 200, body: identityView(updated, this.core.presenceOf(id)) };
  }

  private async deleteDevice(id: string, ifMatch: string | undefined): Promise<Reply> {
    const record = await this.device(id);
    if (ifMatch !== undefined && ifMatch !== '*' && ifMatch !== identityEtag(record)) {
      throw new HubError('PreconditionFailed', `etag ${ifMatch} does not match the device's`);
    }
    await this.core.store.remove(id);
    this.core.sessions.forget(id);
    this.core.disconnect(id);
    return { status: 204 };
  }

  private async patchTwin(id: string, body: Json | undefined, ifMatch: string | undefined, replace: boolean): Promise<Reply> {
    const patch = requireObject(body, 'twin patch');
    if (replace) {
      // PUT replaces tags and desired: turn it into a patch that also deletes what is left out.
      const current = await this.device(id);
      const desired = isObject(patch.properties) && isObject(patch.properties.desired) ? patch.properties.desired : {};
      const tags = isObject(patch.tags) ? patch.tags : {};
      const fill = (now: JsonObject, next: JsonObject): JsonObject => {
        const out: JsonObject = { ...next };
        for (const k of Object.keys(now)) if (!(k in next)) out[k] = null;
        return out;
      };
      patch.tags = fill(current.twin.tags, tags);
      patch.properties = { desired: fill(current.twin.desired.values, desired) };
    }
    const updated = await this.core.servicePatch(id, patch, ifMatch, (r) => twinEtag(r.twin));
    return { status: 200, body: serviceTwinView(updated, this.core.presenceOf(id)) };
  }

  private async invoke(id: string, body: Json | undefined): Promise<Reply> {
    const spec = requireObject(body, 'method invocation');
    const methodName = spec.methodName;
    if (typeof methodName !== 'string' || !/^[^/#+\s?]{1,128}$/.test(methodName)) {
      throw new HubError('ArgumentInvalid', 'methodName must be a non-empty name of at most 128 characters without /, #, +, ? or spaces');
    }
    const payload = spec.payload === undefined ? null : spec.payload;
    const size = Buffer.byteLength(JSON.stringify(payload));
    if (size > METHOD_PAYLOAD_LIMIT) {
      throw new HubError('RequestEntityTooLarge', `method payload is ${size} bytes, over IoT Hub's limit of ${METHOD_PAYLOAD_LIMIT}`);
    }
    const result = await this.core.invokeMethod(id, {
      methodName,
      payload,
      responseTimeoutInSeconds: seconds(spec.responseTimeoutInSeconds, 'responseTimeoutInSeconds', 30, 5, 300),
      connectTimeoutInSeconds: seconds(spec.connectTimeoutInSeconds, 'connectTimeoutInSeconds', 0, 0, 300),
    });
    return { status: 200, body: { status: result.status, payload: result.payload } };
  }

  private async query(req: IncomingMessage, body: Json | undefined): Promise<Reply> {
    const spec = requireObject(body, 'query');
    if (typeof spec.query !== 'string') throw new HubError('ArgumentInvalid', 'query: the body needs a "query" string');
    const filter = parseQuery(spec.query);
    const pageSize = Math.min(Math.max(Number(req.headers['x-ms-max-item-count']) || 100, 1), 1000);
    const start = Number(req.headers['x-ms-continuation'] ?? 0);
    if (!Number.isInteger(start) || start < 0) throw new HubError('ArgumentInvalid', 'x-ms-continuation is not one this hub gave out');
    const all = (await this.core.store.all())
      .sort((a, b) => (a.deviceId < b.deviceId ? -1 : 1))
      .map((r) => serviceTwinView(r, this.core.presenceOf(r.deviceId)))
      .filter(filter);
    const page = all.slice(start, start + pageSize);
    const headers: Record<string, string> = { 'x-ms-item-type': 'Twin' };
    if (start + pageSize < all.length) headers['x-ms-continuation'] = String(start + pageSize);
    return { status: 200, body: page, headers };
  }
}
