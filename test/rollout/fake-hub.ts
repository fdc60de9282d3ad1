import { randomUUID } from 'node:crypto';
import { HubCallError, type ConfigurationInfo, type ConfigurationSpec, type DeviceTwin, type JobDeviceResult, type JobInfo, type MethodCall, type RolloutHub, type TwinPatch } from '../../src/rollout/hub-port.js';

/** How a fake device behaves when the firmwareUpdate method reaches it. */
export type Behaviour = 'ok' | 'failTrial' | 'offline' | 'busy';

interface FakeDevice {
  twin: DeviceTwin;
  version: number;
  behaviour: Behaviour;
  /** Looks left before the device's update moves to its next status. */
  update: { updateId: string; steps: string[] } | null;
}

function merge(into: Record<string, unknown>, patch: Record<string, unknown>): Record<string, unknown> {
  const out = { ...into };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else if (typeof v === 'object' && !Array.isArray(v) && typeof out[k] === 'object' && out[k] !== null) out[k] = merge(out[k] as Record<string, unknown>, v as Record<string, unknown>);
    else out[k] = v;
  }
  return out;
}

function lookup(twin: DeviceTwin, path: string): unknown {
  const root: Record<string, unknown> = { deviceId: twin.deviceId, tags: twin.tags, properties: { reported: twin.reported, desired: twin.desired } };
  return path.split('.').reduce<unknown>((n, p) => (n && typeof n === 'object' ? (n as Record<string, unknown>)[p] : undefined), root);
}

/** The conditions the rollout writes: `a = 'x' AND b = 3`, `IS_DEFINED(p)`. */
export function matches(twin: DeviceTwin, condition: string | null): boolean {
  if (condition === null) return true;
  return condition.split(/\s+AND\s+/).every((c) => {
    const def = /^IS_DEFINED\(([\w.]+)\)$/.exec(c.trim());
    if (def) return lookup(twin, def[1]) !== undefined;
    const m = /^([\w.]+)\s*=\s*(?:'((?:[^']|'')*)'|(\d+))$/.exec(c.trim());
    if (!m) throw new HubCallError('other', `fake hub: cannot read condition '${c}'`, 400);
    const want = m[2] !== undefined ? m[2].replace(/''/g, "'") : Number(m[3]);
    return lookup(twin, m[1]) === want;
  });
}

/**
 * A fake of the rollout's hub port: twins with etags, method jobs run at once, devices whose update
 * advances one status per twin query (waiting → downloading → applying → applyComplete, or
 * applyFailed for a failing trial). Counts calls; can throw 429 on every Nth call.
 */
export class FakeHub implements RolloutHub {
  readonly devices = new Map<string, FakeDevice>();
  readonly jobs = new Map<string, { info: JobInfo; results: JobDeviceResult[] }>();
  readonly calls: Record<string, number> = {};
  readonly cancelsSent: string[] = [];
  readonly configurations = new Map<string, { spec: ConfigurationSpec; applied: Set<string> }>();
  readonly removedConfigurations: string[] = [];
  throttleEvery = 0;
  /** Connection resets at random (seeded), on this share of calls. */
  resets: { rate: number; random: () => number } | null = null;
  private count = 0;

  addDevice(deviceId: string, tags: Record<string, unknown>, behaviour: Behaviour = 'ok'): void {
    const connectionState = behaviour === 'offline' ? 'Disconnected' : 'Connected';
    this.devices.set(deviceId, { twin: { deviceId, etag: randomUUID(), tags, desired: {}, reported: {}, connectionState }, version: 1, behaviour, update: null });
  }

  private call(name: string): void {
    this.calls[name] = (this.calls[name] ?? 0) + 1;
    this.count++;
    if (this.throttleEvery && this.count % this.throttleEvery === 0) throw new HubCallError('throttled', `fake 429 on ${name}`, 429, 'ThrottlingException');
    if (this.resets && this.resets.random() < this.resets.rate) throw new HubCallError('unreachable', `fake ECONNRESET on ${name}`);
  }

  /** Every device with an update moves one status along. */
  advance(): void {
    for (const d of this.devices.values()) this.step(d);
  }

  private step(d: FakeDevice): void {
    if (!d.update || d.update.steps.length === 0) return;
    const status = d.update.steps.shift()!;
    const fu: Record<string, unknown> = { status, updateId: d.update.updateId };
    if (status === 'applyFailed') fu.error = { code: 'trialFailed', message: 'the trial boot did not come up' };
    d.twin.reported = merge(d.twin.reported, { iothubDM: { firmwareUpdate: fu } });
  }

  private startUpdate(d: FakeDevice): string {
    const updateId = randomUUID();
    d.update = { updateId, steps: ['waiting', 'downloading', 'applying', d.behaviour === 'failTrial' ? 'applyFailed' : 'applyComplete'] };
    this.step(d);
    return updateId;
  }

  /** A device comes back online (applies a desired release it finds, as the agent does). */
  reconnect(deviceId: string): void {
    const d = this.devices.get(deviceId)!;
    d.behaviour = 'ok';
    d.twin.connectionState = 'Connected';
    this.actOnDesired(d);
  }

  private actOnDesired(d: FakeDevice): void {
    const fw = (d.twin.desired.piota as Record<string, unknown> | undefined)?.firmware as Record<string, unknown> | undefined;
    const acted = ((d.twin.reported.piota as Record<string, unknown> | undefined)?.firmware as Record<string, unknown> | undefined)?.desiredId;
    if (fw && typeof fw.id === 'string' && acted !== fw.id) {
      const updateId = this.startUpdate(d);
      d.twin.reported = merge(d.twin.reported, { piota: { firmware: { desiredId: fw.id, updateId, decision: 'accepted', message: null } } });
    }
  }

  async queryTwins(condition: string | null): Promise<DeviceTwin[]> {
    this.call('query');
    this.advance();
    this.applyConfigurations();
    return [...this.devices.values()].filter((d) => matches(d.twin, condition)).map((d) => structuredClone(d.twin));
  }
  async getTwin(deviceId: string): Promise<DeviceTwin> {
    this.call('twinRead');
    const d = this.devices.get(deviceId);
    if (!d) throw new HubCallError('notFound', `no device ${deviceId}`, 404, 'DeviceNotFound');
    return structuredClone(d.twin);
  }
  async updateTwin(deviceId: string, patch: TwinPatch, etag?: string): Promise<DeviceTwin> {
    this.call('twinUpdate');
    const d = this.devices.get(deviceId);
    if (!d) throw new HubCallError('notFound', `no device ${deviceId}`, 404, 'DeviceNotFound');
    if (etag && etag !== '*' && etag !== d.twin.etag) throw new HubCallError('preconditionFailed', `etag ${etag} is stale`, 412, 'PreconditionFailed');
    if (patch.tags) d.twin.tags = merge(d.twin.tags, patch.tags);
    if (patch.properties?.desired) d.twin.desired = merge(d.twin.desired, patch.properties.desired);
    d.twin.etag = randomUUID();
    return structuredClone(d.twin);
  }
  async createDevice(deviceId: string): Promise<void> {
    this.call('identity');
    if (this.devices.has(deviceId)) throw new HubCallError('exists', `${deviceId} exists`, 409, 'DeviceAlreadyExists');
    this.addDevice(deviceId, {});
  }
  async scheduleMethodJob(jobId: string, queryCondition: string, call: MethodCall): Promise<void> {
    this.call('jobOperation');
    if (this.jobs.has(jobId)) throw new HubCallError('exists', `job ${jobId} exists`, 409, 'JobAlreadyExists');
    const results: JobDeviceResult[] = [];
    for (const d of this.devices.values()) {
      if (!matches(d.twin, queryCondition)) continue;
      if (d.behaviour === 'offline') results.push({ deviceId: d.twin.deviceId, status: 'failed', errorCode: 'DeviceNotOnline', errorMessage: `device ${d.twin.deviceId} is not online` });
      else if (d.behaviour === 'busy') results.push({ deviceId: d.twin.deviceId, status: 'completed', methodStatus: 409, methodPayload: { message: 'another update is in progress' } });
      else results.push({ deviceId: d.twin.deviceId, status: 'completed', methodStatus: 200, methodPayload: { updateId: this.startUpdate(d), message: `accepted ${String((call.payload as Record<string, unknown>).fwPackageUri)}` } });
    }
    this.jobs.set(jobId, { info: { jobId, status: 'completed' }, results });
  }
  async getJob(jobId: string): Promise<JobInfo | null> {
    this.call('jobOperation');
    return this.jobs.get(jobId)?.info ?? null;
  }
  async cancelJob(jobId: string): Promise<void> {
    this.call('jobOperation');
    const j = this.jobs.get(jobId);
    if (j) j.info.status = 'cancelled';
  }
  async jobDeviceResults(jobId: string): Promise<JobDeviceResult[]> {
    this.call('query');
    return structuredClone(this.jobs.get(jobId)?.results ?? []);
  }
  async invokeMethod(deviceId: string, call: MethodCall): Promise<{ status: number; payload: unknown }> {
    this.call('method');
    const d = this.devices.get(deviceId);
    if (!d || d.behaviour === 'offline') throw new HubCallError('offline', `${deviceId} is not online`, 404, 'DeviceNotOnline');
    if (call.methodName === 'firmwareUpdateCancel') {
      this.cancelsSent.push(deviceId);
      if (d.update) {
        d.update.steps = [];
        d.twin.reported = merge(d.twin.reported, { iothubDM: { firmwareUpdate: { status: 'applyFailed', updateId: d.update.updateId, error: { code: 'cancelled', message: 'cancelled' } } } });
      }
    }
    return { status: 200, payload: { message: 'cancelled' } };
  }
  /**
   * Configurations are applied when created and on every twin query (the hub's own sweep): each
   * matching device gets the desired patch once; a deleted one leaves what it wrote, as in IoT Hub.
   */
  async addConfiguration(spec: ConfigurationSpec): Promise<void> {
    this.call('configuration');
    if (this.configurations.has(spec.id)) throw new HubCallError('exists', `configuration ${spec.id} exists`, 409, 'ConfigurationAlreadyExists');
    this.configurations.set(spec.id, { spec, applied: new Set() });
    this.applyConfigurations();
  }
  async getConfiguration(id: string): Promise<ConfigurationInfo | null> {
    this.call('configuration');
    const c = this.configurations.get(id);
    if (!c) return null;
    const count = (q: string) => [...this.devices.values()].filter((d) => matches(d.twin, /WHERE (.*)$/.exec(q)![1])).length;
    return { id, targetCondition: c.spec.targetCondition, metrics: Object.fromEntries(Object.entries(c.spec.metrics).map(([k, q]) => [k, count(q)])), systemMetrics: { targetedCount: count(`WHERE ${c.spec.targetCondition}`), appliedCount: c.applied.size } };
  }
  async removeConfiguration(id: string): Promise<void> {
    this.call('configuration');
    if (!this.configurations.delete(id)) throw new HubCallError('notFound', `no configuration ${id}`, 404, 'ConfigurationNotFound');
    this.removedConfigurations.push(id);
  }

  private applyConfigurations(): void {
    for (const { spec, applied } of this.configurations.values()) {
      for (const d of this.devices.values()) {
        if (applied.has(d.twin.deviceId) || !matches(d.twin, spec.targetCondition)) continue;
        applied.add(d.twin.deviceId);
        d.twin.desired = merge(d.twin.desired, spec.desiredPatch);
        d.twin.etag = randomUUID();
        // A connected device acts on the desired release at once, as the agent does.
        if (d.behaviour !== 'offline') this.actOnDesired(d);
      }
    }
  }
}
