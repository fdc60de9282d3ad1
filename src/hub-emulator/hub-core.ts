import { EventEmitter } from 'node:events';
import { HubError } from './errors.js';
import type { DeviceRecord, Presence } from './device-record.js';
import type { SessionStore } from './sessions.js';
import type { DeviceStore } from './store.js';
import { isObject, patchDesired, patchReported, patchTags, type Json, type JsonObject } from './twin.js';

export const topics = {
  twinResponses: '$iothub/twin/res/#',
  desiredUpdates: '$iothub/twin/PATCH/properties/desired/#',
  methods: '$iothub/methods/POST/#',
  cloudToDevice: (id: string) => `devices/${id}/messages/devicebound/#`,
};

/** How the hub reaches one connected device: a publish to that client only. */
export interface DeviceLink {
  send(topic: string, payload: string): void;
  close(): void;
}

export interface MethodRequest {
  methodName: string;
  payload: Json;
  responseTimeoutInSeconds: number;
  connectTimeoutInSeconds: number;
}

export interface MethodResult {
  status: number;
  payload: Json;
}

interface PendingMethod {
  deviceId: string;
  resolve(result: MethodResult): void;
  reject(err: HubError): void;
  timer: NodeJS.Timeout;
}

export const METHOD_PAYLOAD_LIMIT = 128 * 1024;

/**
 * The hub's state machine shared by the device protocol (MQTT) and the service API (HTTPS):
 * which devices are connected, their twins, and the direct-method calls in flight.
 */
export class HubCore extends EventEmitter {
  private readonly links = new Map<string, DeviceLink>();
  private readonly presence = new Map<string, { lastActivityTime: string; connectionStateUpdatedTime: string }>();
  private readonly telemetry = new Map<string, number>();
  private readonly pending = new Map<string, PendingMethod>();
  private readonly waiters = new Set<{ timer: NodeJS.Timeout; cancel(): void }>();
  private nextRequestId = 1;
  private closed = false;

  constructor(
    readonly store: DeviceStore,
    readonly sessions: SessionStore,
  ) {
    super();
    this.setMaxListeners(0);
  }

  // --- presence -------------------------------------------------------------------------------

  attach(deviceId: string, link: DeviceLink): void {
    const now = new Date().toISOString();
    this.links.set(deviceId, link);
    this.presence.set(deviceId, { lastActivityTime: now, connectionStateUpdatedTime: now });
  }

  /** Detaches only if `link` is still the current one (a takeover attaches the new link first). */
  detach(deviceId: string, link: DeviceLink): boolean {
    if (this.links.get(deviceId) !== link) return false;
    this.links.delete(deviceId);
    const now = new Date().toISOString();
    const p = this.presence.get(deviceId);
    this.presence.set(deviceId, { lastActivityTime: p?.lastActivityTime ?? now, connectionStateUpdatedTime: now });
    for (const [rid, call] of this.pending) {
      if (call.deviceId !== deviceId) continue;
      this.pending.delete(rid);
      clearTimeout(call.timer);
      call.reject(new HubError('DeviceNotOnline', `device ${deviceId} disconnected before answering the method call`));
    }
    return true;
  }

  isConnected(deviceId: string): boolean {
    return this.links.has(deviceId);
  }

  connectedDevices(): string[] {
    return [...this.links.keys()];
  }

  presenceOf(deviceId: string): Presence {
    return { connected: this.links.has(deviceId), ...this.presence.get(deviceId) };
  }

  touched(deviceId: string): void {
    const p = this.presence.get(deviceId);
    if (p) p.lastActivityTime = new Date().toISOString();
  }

  /** Disconnects a device (it was deleted or disabled). */
  disconnect(deviceId: string): void {
    this.links.get(deviceId)?.close();
  }

  // --- telemetry ------------------------------------------------------------------------------

  countTelemetry(deviceId: string): void {
    this.telemetry.set(deviceId, (this.telemetry.get(deviceId) ?? 0) + 1);
    this.touched(deviceId);
  }

  telemetryCount(deviceId: string): number {
    return this.telemetry.get(deviceId) ?? 0;
  }

  // --- twins ----------------------------------------------------------------------------------

  private async existing(deviceId: string): Promise<DeviceRecord> {
    const record = await this.store.find(deviceId);
    if (!record) throw new HubError('DeviceNotFound', `Device ${deviceId} not registered`);
    return record;
  }

  /** A reported patch from the device; resolves with the new reported `$version` once persisted. */
  async reportedPatch(deviceId: string, patch: JsonObject): Promise<number> {
    const record = await this.existing(deviceId);
    const twin = patchReported(record.twin, patch);
    const next = { ...record, twin };
    await this.store.put(next);
    this.touched(deviceId);
    return twin.reported.version;
  }

  /**
   * A service patch `{tags?, properties: {desired?}}`, guarded by `ifMatch` (the twin etag, or `*`).
   * The desired part is pushed to the device (with `$version` inside the body, as IoT Hub does).
   */
  async servicePatch(deviceId: string, body: JsonObject, ifMatch: string | undefined, etagOf: (r: DeviceRecord) => string): Promise<DeviceRecord> {
    const record = await this.existing(deviceId);
    if (ifMatch !== undefined && ifMatch !== '*' && ifMatch !== etagOf(record)) {
      throw new HubError('PreconditionFailed', `Precondition failed: etag ${ifMatch} does not match the twin's current etag`);
    }
    // Other members (deviceId, etag, status... echoed from a twin the caller read) are read-only here and ignored.
    let twin = record.twin;
    if (body.tags !== undefined) {
      if (!isObject(body.tags)) throw new HubError('ArgumentInvalid', 'twin patch: tags must be an object');
      twin = patchTags(twin, body.tags);
    }
    let desired: JsonObject | undefined;
    if (body.properties !== undefined) {
      if (!isObject(body.properties)) throw new HubError('ArgumentInvalid', 'twin patch: properties must be an object');
      if (body.properties.reported !== undefined) throw new HubError('ArgumentInvalid', 'twin patch: reported properties can only be changed by the device');
      if (body.properties.desired !== undefined) {
        if (!isObject(body.properties.desired)) throw new HubError('ArgumentInvalid', 'twin patch: properties.desired must be an object');
        desired = body.properties.desired;
        twin = patchDesired(twin, desired);
      }
    }
    const next = { ...record, twin };
    await this.store.put(next);
    if (desired !== undefined) this.pushDesired(deviceId, desired, twin.desired.version);
    return next;
  }

  private pushDesired(deviceId: string, patch: JsonObject, version: number): void {
    const link = this.links.get(deviceId);
    if (!link || !this.sessions.has(deviceId, topics.desiredUpdates)) return;
    const body: JsonObject = {};
    for (const [k, v] of Object.entries(patch)) if (k !== '$version' && k !== '$metadata') body[k] = v;
    body.$version = version;
    link.send(`$iothub/twin/PATCH/properties/desired/?$version=${version}`, JSON.stringify(body));
  }

  // --- direct methods -------------------------------------------------------------------------

  /** Waits up to `seconds` for the device to connect and subscribe to methods. */
  private waitForMethodsSubscription(deviceId: string, seconds: number): Promise<boolean> {
    if (this.methodsReady(deviceId)) return Promise.resolve(true);
    if (seconds <= 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      const onReady = (id: string) => {
        if (id !== deviceId || !this.methodsReady(deviceId)) return;
        finish(true);
      };
      const waiter = {
        timer: setTimeout(() => finish(false), seconds * 1000),
        cancel: () => finish(false),
      };
      const finish = (ok: boolean) => {
        clearTimeout(waiter.timer);
        this.waiters.delete(waiter);
        this.off('methodsReady', onReady);
        resolve(ok);
      };
      this.waiters.add(waiter);
      this.on('methodsReady', onReady);
    });
  }

  private methodsReady(deviceId: string): boolean {
    return this.links.has(deviceId) && this.sessions.has(deviceId, topics.methods);
  }

  /** Called when a device subscribed (methods may now be invoked on it). */
  subscriptionsChanged(deviceId: string): void {
    if (this.methodsReady(deviceId)) this.emit('methodsReady', deviceId);
  }

  async invokeMethod(deviceId: string, request: MethodRequest): Promise<MethodResult> {
    await this.existing(deviceId);
    if (!(await this.waitForMethodsSubscription(deviceId, request.connectTimeoutInSeconds))) {
      throw new HubError('DeviceNotOnline', `Device ${deviceId} is not online or not subscribed to direct methods`);
    }
    const link = this.links.get(deviceId);
    if (!link || this.closed) throw new HubError('DeviceNotOnline', `Device ${deviceId} is not online`);
    const rid = (this.nextRequestId++).toString(16);
    return new Promise<MethodResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(rid);
        reject(new HubError('GatewayTimeout', `Timed out waiting for the response from device ${deviceId} (${request.responseTimeoutInSeconds} s)`));
      }, request.responseTimeoutInSeconds * 1000);
      this.pending.set(rid, { deviceId, resolve, reject, timer });
      link.send(`$iothub/methods/POST/${request.methodName}/?$rid=${rid}`, JSON.stringify(request.payload ?? null));
    });
  }

  /** The device's answer to a method call; answers from another device than the one asked are dropped. */
  methodResponse(deviceId: string, rid: string, status: number, body: Buffer): void {
    const call = this.pending.get(rid);
    if (!call || call.deviceId !== deviceId) return;
    this.pending.delete(rid);
    clearTimeout(call.timer);
    this.touched(deviceId);
    if (body.length > METHOD_PAYLOAD_LIMIT) {
      call.reject(new HubError('RequestEntityTooLarge', `the device's method response is ${body.length} bytes, over the ${METHOD_PAYLOAD_LIMIT} byte limit`));
      return;
    }
    const text = body.toString('utf8');
    let payload: Json = null;
    if (text.trim() !== '') {
      try {
        payload = JSON.parse(text) as Json;
      } catch {
        call.reject(new HubError('BadRequest', `device ${deviceId} answered the method call with a payload that is not JSON`));
        return;
      }
    }
    call.resolve({ status, payload });
  }

  /** Fails every call in flight and stops every timer. */
  close(): void {
    this.closed = true;
    for (const call of this.pending.values()) {
      clearTimeout(call.timer);
      call.reject(new HubError('ServerError', 'the hub is shutting down'));
    }
    this.pending.clear();
    for (const w of [...this.waiters]) w.cancel();
  }
}
