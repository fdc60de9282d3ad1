import { join } from 'node:path';
import { readStateFile, writeStateFile } from '../os/state-file.js';
import { HubError } from './errors.js';
import type { HubCore } from './hub-core.js';
import { compileQuery, parseCondition, type TwinFilter } from './query.js';
import { maxConfigurations, type Tier } from './throttle.js';
import { isObject, validatePatch, type Json, type JsonObject } from './twin.js';

const SCHEMA = 1;
/** IoT Hub re-evaluates configurations every few minutes; the emulator also acts at once on the changes it sees. */
const REEVALUATE_MS = 5000;
const DESIRED_PREFIX = 'properties.desired.';

interface Configuration {
  id: string;
  schemaVersion: string;
  labels: JsonObject;
  deviceContent: JsonObject;
  targetCondition: string;
  priority: number;
  createdTimeUtc: string;
  lastUpdatedTimeUtc: string;
  metrics: Record<string, string>;
  version: number;
  /** Devices whose desired properties got this configuration's content. */
  applied: string[];
}

export interface ConfigurationsOptions {
  core: HubCore;
  dir: string;
  tier: Tier | undefined;
  /** Every twin as the service sees it, without configurations (they are added here). */
  twins(): Promise<JsonObject[]>;
  log(message: string): void;
}

function etagOf(c: Configuration): string {
  return Buffer.from(`${c.id}:${c.version}`).toString('base64');
}

/** `{"properties.desired.piota": {...}}` → the desired patch `{piota: {...}}`. */
function desiredPatch(deviceContent: JsonObject): JsonObject {
  const patch: JsonObject = {};
  for (const [path, value] of Object.entries(deviceContent)) {
    const keys = path.slice(DESIRED_PREFIX.length).split('.');
    let node = patch;
    for (const k of keys.slice(0, -1)) node = (node[k] = isObject(node[k]) ? node[k] : {}) as JsonObject;
    node[keys[keys.length - 1]] = value;
  }
  return patch;
}

function validateSaved(data: unknown): Configuration[] {
  if (!Array.isArray(data)) throw new Error('expected a list of configurations');
  for (const c of data as Partial<Configuration>[]) {
    if (typeof c?.id !== 'string' || typeof c.targetCondition !== 'string' || !Array.isArray(c.applied)) throw new Error('every configuration needs id, targetCondition and applied');
  }
  return data as Configuration[];
}

/**
 * IoT Hub's automatic device configurations: a desired-properties patch applied to every device
 * that matches a target condition (the highest priority wins, then the newest), re-evaluated when
 * tags change, a device registers, a configuration changes, and every few seconds. The twin shows
 * `configurations.{id}.status` as `Applied` or `Targeted`; metrics are queries counted on read.
 * Kept in DIR/configurations.json.
 */
export class ConfigurationManager {
  private readonly configs = new Map<string, Configuration>();
  private readonly file: string;
  private chain: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly conditions = new Map<string, TwinFilter>();

  private constructor(private readonly options: ConfigurationsOptions) {
    this.file = join(options.dir, 'configurations.json');
  }

  static async open(options: ConfigurationsOptions): Promise<ConfigurationManager> {
    const m = new ConfigurationManager(options);
    for (const c of (await readStateFile(m.file, SCHEMA, validateSaved)) ?? []) m.configs.set(c.id, c);
    m.timer = setInterval(() => {
      if (m.configs.size > 0) void m.reevaluate();
    }, REEVALUATE_MS);
    m.timer.unref();
    return m;
  }

  private condition(c: Configuration): TwinFilter {
    const key = `${c.id}:${c.version}`;
    let f = this.conditions.get(key);
    if (!f) {
      f = parseCondition(c.targetCondition, 'targetCondition');
      this.conditions.set(key, f);
    }
    return f;
  }

  // --- REST -------------------------------------------------------------------------------------

  async put(id: string, body: Json | undefined, ifMatch: string | undefined): Promise<JsonObject> {
    if (!/^[a-z0-9\-:+%_#*?!(),=@;$']{1,128}$/.test(id)) {
      throw new HubError('ArgumentInvalid', `configuration id '${id}' must be 1 to 128 lowercase letters, digits or -:+%_#*?!(),=@;$'`);
    }
    if (!isObject(body)) throw new HubError('ArgumentInvalid', 'configuration: expected a JSON object body');
    if (body.id !== undefined && body.id !== id) throw new HubError('ArgumentInvalid', `id '${String(body.id)}' in the body does not match '${id}' in the path`);
    const content = isObject(body.content) ? body.content : {};
    if (isObject(content.modulesContent) && Object.keys(content.modulesContent).length > 0) {
      throw new HubError('ArgumentInvalid', 'configuration: modulesContent (IoT Edge deployments) is not emulated');
    }
    const deviceContent = isObject(content.deviceContent) ? content.deviceContent : undefined;
    if (!deviceContent || Object.keys(deviceContent).length === 0) {
      throw new HubError('ArgumentInvalid', 'configuration: content.deviceContent must hold at least one "properties.desired.<name>" entry');
    }
    for (const key of Object.keys(deviceContent)) {
      if (!key.startsWith(DESIRED_PREFIX) || key.length === DESIRED_PREFIX.length) {
        throw new HubError('ArgumentInvalid', `configuration: deviceContent key '${key}' must start with ${DESIRED_PREFIX}`);
      }
    }
    validatePatch(desiredPatch(deviceContent), 'content.deviceContent');
    if (typeof body.targetCondition !== 'string') throw new HubError('ArgumentInvalid', "configuration: targetCondition must be a condition such as \"tags.site = 'lab'\" (or '*')");
    parseCondition(body.targetCondition, 'targetCondition');
    const priority = body.priority ?? 0;
    if (typeof priority !== 'number' || !Number.isInteger(priority) || priority < 0) throw new HubError('ArgumentInvalid', 'configuration: priority must be a whole number, 0 or more');
    const metricsIn = isObject(body.metrics) && isObject(body.metrics.queries) ? body.metrics.queries : {};
    const metrics: Record<string, string> = {};
    for (const [name, q] of Object.entries(metricsIn)) {
      if (typeof q !== 'string') throw new HubError('ArgumentInvalid', `configuration: metric '${name}' must be a query string`);
      try {
        compileQuery(q);
      } catch (err) {
        throw new HubError('ArgumentInvalid', `configuration: metric '${name}': ${(err as Error).message}`);
      }
      metrics[name] = q;
    }
    const labels = isObject(body.labels) ? body.labels : {};
    const now = new Date().toISOString();
    const existing = this.configs.get(id);
    let config: Configuration;
    if (!existing) {
      if (ifMatch !== undefined && ifMatch !== '*') throw new HubError('ConfigurationNotFound', `Configuration ${id} not found`);
      if (this.configs.size >= maxConfigurations(this.options.tier)) {
        throw new HubError('ArgumentInvalid', `the hub already holds ${this.configs.size} configurations, IoT Hub's limit`);
      }
      config = { id, schemaVersion: '1.0', labels, deviceContent, targetCondition: body.targetCondition, priority, createdTimeUtc: now, lastUpdatedTimeUtc: now, metrics, version: 1, applied: [] };
    } else {
      if (ifMatch === undefined) throw new HubError('ConfigurationAlreadyExists', `A configuration with id '${id}' already exists (update it with If-Match)`);
      if (ifMatch !== '*' && ifMatch !== etagOf(existing)) throw new HubError('PreconditionFailed', `etag ${ifMatch} does not match the configuration's`);
      // As in IoT Hub, a configuration's content cannot change once created: make a new one.
      if (JSON.stringify(deviceContent) !== JSON.stringify(existing.deviceContent)) {
        throw new HubError('ArgumentInvalid', `configuration ${id}: content cannot be updated; create a new configuration`);
      }
      config = { ...existing, labels, targetCondition: body.targetCondition, priority, metrics, lastUpdatedTimeUtc: now, version: existing.version + 1 };
    }
    this.configs.set(id, config);
    await this.save();
    await this.reevaluate();
    return this.view(config, await this.options.twins());
  }

  async get(id: string): Promise<JsonObject> {
    return this.view(this.find(id), await this.options.twins());
  }

  async list(): Promise<JsonObject[]> {
    const twins = await this.options.twins();
    return [...this.configs.values()].map((c) => this.view(c, twins));
  }

  async remove(id: string, ifMatch: string | undefined): Promise<void> {
    const c = this.find(id);
    if (ifMatch !== undefined && ifMatch !== '*' && ifMatch !== etagOf(c)) throw new HubError('PreconditionFailed', `etag ${ifMatch} does not match the configuration's`);
    // IoT Hub leaves the desired properties a deleted configuration wrote; other configurations may now apply.
    this.configs.delete(id);
    await this.save();
    await this.reevaluate();
  }

  private find(id: string): Configuration {
    const c = this.configs.get(id);
    if (!c) throw new HubError('ConfigurationNotFound', `Configuration ${id} not found`);
    return c;
  }

  // --- evaluation -------------------------------------------------------------------------------

  /** The `configurations` member of a device's twin, or undefined when none targets it. */
  ofDevice(deviceId: string, twin?: JsonObject): JsonObject | undefined {
    const out: JsonObject = {};
    for (const c of this.configs.values()) {
      if (c.applied.includes(deviceId)) out[c.id] = { status: 'Applied' };
      else if (twin && this.condition(c)(twin)) out[c.id] = { status: 'Targeted' };
      else if (!twin && this.targeted.get(c.id)?.has(deviceId)) out[c.id] = { status: 'Targeted' };
    }
    return Object.keys(out).length > 0 ? out : undefined;
  }

  /** Devices each configuration targeted at its last evaluation. */
  private readonly targeted = new Map<string, Set<string>>();

  private soon: NodeJS.Timeout | undefined;

  /** A device's tags changed or it was registered: evaluate soon (a job tagging 500 devices causes one evaluation, not 500). */
  twinChanged(_deviceId: string): void {
    if (this.soon || this.closed || this.configs.size === 0) return;
    this.soon = setTimeout(() => {
      this.soon = undefined;
      void this.reevaluate();
    }, 50);
  }

  /** Applies the winning configuration to every device it has not reached yet (one evaluation at a time). */
  reevaluate(): Promise<void> {
    this.chain = this.chain.catch(() => undefined).then(() => this.evaluate());
    return this.chain;
  }

  private async evaluate(): Promise<void> {
    if (this.closed || this.configs.size === 0) return;
    const twins = await this.options.twins();
    let changed = false;
    const ranked = [...this.configs.values()].sort((a, b) => b.priority - a.priority || (a.createdTimeUtc < b.createdTimeUtc ? 1 : -1));
    this.targeted.clear();
    for (const c of ranked) this.targeted.set(c.id, new Set());
    for (const twin of twins) {
      const id = twin.deviceId as string;
      const matching = ranked.filter((c) => this.condition(c)(twin));
      for (const c of matching) this.targeted.get(c.id)!.add(id);
      const winner = matching[0];
      for (const c of ranked) {
        if (c !== winner && c.applied.includes(id)) {
          c.applied = c.applied.filter((d) => d !== id);
          changed = true;
        }
      }
      if (!winner || winner.applied.includes(id)) continue;
      // Recorded before the patch is written, so no reader sees the content without the status.
      winner.applied.push(id);
      changed = true;
      try {
        await this.options.core.servicePatch(id, { properties: { desired: desiredPatch(winner.deviceContent) } }, '*');
      } catch (err) {
        winner.applied = winner.applied.filter((d) => d !== id);
        this.options.log(`configuration ${winner.id} not applied to ${id}: ${(err as Error).message}`);
      }
    }
    if (changed) await this.save();
  }

  private view(c: Configuration, twins: JsonObject[]): JsonObject {
    const rows = twins.map((t) => {
      const cfg = this.ofDevice(t.deviceId as string, t);
      return cfg ? { ...t, configurations: cfg } : t;
    });
    const metricResults: JsonObject = {};
    for (const [name, q] of Object.entries(c.metrics)) {
      const query = compileQuery(q);
      metricResults[name] = query.shape(rows.filter(query.filter)).length;
    }
    const condition = this.condition(c);
    return {
      id: c.id,
      schemaVersion: c.schemaVersion,
      labels: c.labels,
      content: { deviceContent: c.deviceContent },
      targetCondition: c.targetCondition,
      createdTimeUtc: c.createdTimeUtc,
      lastUpdatedTimeUtc: c.lastUpdatedTimeUtc,
      priority: c.priority,
      systemMetrics: {
        queries: {
          targetedCount: `select deviceId from devices where ${c.targetCondition}`,
          appliedCount: `select deviceId from devices where configurations.[[${c.id}]].status = 'Applied'`,
        },
        results: { targetedCount: twins.filter(condition).length, appliedCount: c.applied.length },
      },
      metrics: { queries: c.metrics, results: metricResults },
      etag: etagOf(c),
    };
  }

  private saving: Promise<void> = Promise.resolve();

  /** Saves the configurations as they are now, after any save in progress. */
  private save(): Promise<void> {
    const data = JSON.parse(JSON.stringify([...this.configs.values()])) as Configuration[];
    this.saving = this.saving.catch(() => undefined).then(() => writeStateFile(this.file, SCHEMA, data));
    return this.saving;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.soon) clearTimeout(this.soon);
    await this.chain.catch(() => undefined);
  }
}
