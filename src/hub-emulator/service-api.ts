import type { IncomingMessage, ServerResponse } from 'node:http';
import { HubError, restErrorBody } from './errors.js';
import { identityEtag, identityView, newDeviceRecord, serviceTwinView, checkDeviceId, type DeviceRecord } from './device-record.js';
import type { HubCore } from './hub-core.js';
import { parseMethodRequest } from './method-request.js';
import type { ConfigurationManager } from './configurations.js';
import type { JobManager } from './jobs.js';
import { compileQuery } from './query.js';
import { parseSasToken, SasError, verifySasToken } from './sas.js';
import { METHOD_METER_BYTES, type Category, type Throttle } from './throttle.js';
import { isObject, type Json, type JsonObject } from './twin.js';

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
  jobs: JobManager;
  configurations: ConfigurationManager;
  throttle: Throttle;
  /** Every twin as the service sees it (with its configurations), in device-id order. */
  twins(): Promise<JsonObject[]>;
  log(message: string): void;
}

/** Which of IoT Hub's throttles a service call counts against. */
function categoryOf(parts: readonly string[], method: string): Category | undefined {
  switch (parts[0]) {
    case 'devices':
      return parts[1] === 'query' ? 'queries' : 'registry';
    case 'twins':
      if (parts[2] === 'methods') return undefined; // counted once the payload size is known
      return method === 'GET' ? 'twinReads' : 'twinUpdates';
    case 'jobs':
      return 'jobs';
    case 'configurations':
      return 'configurations';
  }
  return undefined;
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

function decodePathPart(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new HubError('BadRequest', `'${part}' in the path is not URL-encoded properly`);
  }
}

function requireObject(body: Json | undefined, what: string): JsonObject {
  if (!isObject(body)) throw new HubError('ArgumentInvalid', `${what}: expected a JSON object body`);
  return body;
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
    const parts = url.pathname.split('/').filter((p) => p !== '').map(decodePathPart);
    const method = req.method ?? 'GET';
    // The emulator's own endpoint (not IoT Hub's): request rates and throttling per category.
    if (parts.length === 2 && parts[0] === 'emulator' && parts[1] === 'stats' && method === 'GET') {
      return { status: 200, body: this.options.throttle.stats() };
    }
    if (!url.searchParams.get('api-version')) throw new HubError('BadRequest', 'api-version is required');
    const ifMatch = unquote(req.headers['if-match'] as string | undefined);
    const category = categoryOf(parts, method);
    if (category) this.options.throttle.take(category);

    if (parts[0] === 'jobs' && parts[1] === 'v2') return this.jobsRoute(req, parts.slice(2), method, url);
    if (parts[0] === 'configurations') return this.configurationsRoute(req, parts.slice(1), method, ifMatch);

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
      if (method === 'GET') return { status: 200, body: this.twinView(await this.device(id)) };
      if (method === 'PATCH' || method === 'PUT') return this.patchTwin(id, await jsonBody(req), ifMatch, method === 'PUT');
      throw new HubError('MethodNotAllowed', `${method} is not supported on /twins/{id}`);
    }
    if (parts[0] === 'twins' && parts.length === 3 && parts[2] === 'methods' && method === 'POST') {
      return this.invoke(parts[1], await jsonBody(req));
    }
    throw new HubError('NotFound', `${method} ${url.pathname} is not part of the emulated API`);
  }

  private async jobsRoute(req: IncomingMessage, parts: string[], method: string, url: URL): Promise<Reply> {
    const jobs = this.options.jobs;
    if (parts.length === 1 && parts[0] === 'query' && method === 'GET') {
      const all = jobs.list(url.searchParams.get('jobType') ?? undefined, url.searchParams.get('jobStatus') ?? undefined);
      return page(req, all, 'JobResponse');
    }
    if (parts.length === 1) {
      if (method === 'PUT') return { status: 200, body: await jobs.create(parts[0], await jsonBody(req)) };
      if (method === 'GET') return { status: 200, body: jobs.get(parts[0]) };
      throw new HubError('MethodNotAllowed', `${method} is not supported on /jobs/v2/{id}`);
    }
    if (parts.length === 2 && parts[1] === 'cancel' && method === 'POST') return { status: 200, body: await jobs.cancel(parts[0]) };
    throw new HubError('NotFound', `${method} /jobs/v2/${parts.join('/')} is not part of the emulated API`);
  }

  private async configurationsRoute(req: IncomingMessage, parts: string[], method: string, ifMatch: string | undefined): Promise<Reply> {
    const configs = this.options.configurations;
    if (parts.length === 0 && method === 'GET') return { status: 200, body: await configs.list() };
    if (parts.length === 1) {
      const id = parts[0];
      if (method === 'PUT') return { status: 200, body: await configs.put(id, await jsonBody(req), ifMatch) };
      if (method === 'GET') return { status: 200, body: await configs.get(id) };
      if (method === 'DELETE') {
        await configs.remove(id, ifMatch);
        return { status: 204 };
      }
      throw new HubError('MethodNotAllowed', `${method} is not supported on /configurations/{id}`);
    }
    throw new HubError('NotFound', `${method} /configurations/${parts.join('/')} is not part of the emulated API`);
  }

  private twinView(record: DeviceRecord): JsonObject {
    const twin = serviceTwinView(record, this.core.presenceOf(record.deviceId));
    const configurations = this.options.configurations.ofDevice(record.deviceId);
    if (configurations) twin.configurations = configurations;
    return twin;
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
    const givenStatus = spec.status as 'enabled' | 'disabled' | undefined;
    await this.core.store.find(id);
    // Re-read after the await: from here to put() nothing awaits, so concurrent updates cannot interleave.
    const existing = this.core.store.get(id);
    if (!existing) {
      if (ifMatch !== undefined && ifMatch !== '*') throw new HubError('DeviceNotFound', `Device ${id} not registered`);
      const record = newDeviceRecord(id, { primaryKey: key('primaryKey'), secondaryKey: key('secondaryKey') }, givenStatus ?? 'enabled');
      await this.core.store.put(record);
      this.options.configurations.twinChanged(id);
      return { status: 200, body: identityView(record, this.core.presenceOf(id)) };
    }
    if (ifMatch === undefined) throw new HubError('DeviceAlreadyExists', `A device with ID '${id}' is already registered`);
    if (ifMatch !== '*' && ifMatch !== identityEtag(existing)) throw new HubError('PreconditionFailed', `etag ${ifMatch} does not match the device's`);
    const status = givenStatus ?? existing.status;
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
    const updated = await this.core.servicePatch(id, patch, ifMatch, replace ? 'replace' : 'merge');
    if (patch.tags !== undefined || replace) this.options.configurations.twinChanged(id);
    return { status: 200, body: this.twinView(updated) };
  }

  private async invoke(id: string, body: Json | undefined): Promise<Reply> {
    const { payloadBytes, ...request } = parseMethodRequest(body, 'method invocation');
    this.options.throttle.take('directMethods', Math.max(1, Math.ceil(payloadBytes / METHOD_METER_BYTES)));
    const result = await this.core.invokeMethod(id, request);
    return { status: 200, body: { status: result.status, payload: result.payload } };
  }

  private async query(req: IncomingMessage, body: Json | undefined): Promise<Reply> {
    const spec = requireObject(body, 'query');
    if (typeof spec.query !== 'string') throw new HubError('ArgumentInvalid', 'query: the body needs a "query" string');
    const query = compileQuery(spec.query);
    const rows = query.source === 'devices' ? await this.options.twins() : this.options.jobs.deviceJobs();
    const result = query.shape(rows.filter(query.filter));
    const itemType = !query.selectsAll ? 'Raw' : query.source === 'devices' ? 'Twin' : 'DeviceJob';
    return page(req, result, itemType);
  }
}

/** One page of a result: `x-ms-max-item-count` items (100 by default, at most 1000) from `x-ms-continuation`. */
function page(req: IncomingMessage, all: Json[], itemType: string): Reply {
  const pageSize = Math.min(Math.max(Number(req.headers['x-ms-max-item-count']) || 100, 1), 1000);
  const token = req.headers['x-ms-continuation'];
  const start = token === undefined || token === '' ? 0 : Number(token);
  if (!Number.isInteger(start) || start < 0) throw new HubError('ArgumentInvalid', 'x-ms-continuation is not one this hub gave out');
  const headers: Record<string, string> = { 'x-ms-item-type': itemType };
  if (start + pageSize < all.length) headers['x-ms-continuation'] = String(start + pageSize);
  return { status: 200, body: all.slice(start, start + pageSize), headers };
}
