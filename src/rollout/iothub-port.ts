import type { Registry as ServiceRegistry } from 'azure-iothub';
import { serviceClient, serviceJobClient, serviceRegistry, type HubTarget } from '../service/hub-connection.js';
import { HubCallError, type DeviceTwin, type JobDeviceResult, type JobInfo, type JobStatus, type RolloutHub } from './hub-port.js';
import type { Pacer } from './pacer.js';

interface SdkError extends Error {
  response?: { statusCode?: number };
  responseBody?: string;
  statusCode?: number;
}

/** Sorts an azure-iothub error into what the controller does about it. */
export function toHubCallError(err: unknown, what: string): HubCallError {
  if (err instanceof HubCallError) return err;
  const e = err as SdkError;
  const status = e.response?.statusCode ?? e.statusCode;
  const body = e.responseBody ?? '';
  const code = /ErrorCode:(\w+)/.exec(body)?.[1] ?? /"?ErrorCode"?\s*[:=]\s*"?(\w+)/.exec(body)?.[1] ?? e.name;
  const message = `${what}: ${e.message}${status ? ` (HTTP ${status}${code ? `, ${code}` : ''})` : ''}`;
  if (status === 429 || /Throttl/i.test(code)) return new HubCallError('throttled', message, status, code);
  if (status === 412 || /PreconditionFailed/.test(code)) return new HubCallError('preconditionFailed', message, status, code);
  if (/DeviceNotOnline/.test(code) || /DeviceNotOnline/.test(body)) return new HubCallError('offline', message, status, code);
  if (status === 409 || /AlreadyExists/.test(code)) return new HubCallError('exists', message, status, code);
  if (status === 404) return new HubCallError('notFound', message, status, code);
  if (status === 401 || status === 403) return new HubCallError('unauthorized', message, status, code);
  if (status === undefined) return new HubCallError('unreachable', message, status, code);
  return new HubCallError('other', message, status, code);
}

function twinOf(raw: Record<string, unknown>): DeviceTwin {
  const props = (raw.properties ?? {}) as { desired?: Record<string, unknown>; reported?: Record<string, unknown> };
  return {
    deviceId: String(raw.deviceId),
    etag: typeof raw.etag === 'string' ? raw.etag : undefined,
    tags: (raw.tags ?? {}) as Record<string, unknown>,
    desired: props.desired ?? {},
    reported: props.reported ?? {},
    connectionState: typeof raw.connectionState === 'string' ? raw.connectionState : undefined,
  };
}

function jobStatus(raw: unknown): JobStatus {
  const s = String(raw ?? '').toLowerCase();
  if (s === 'canceled' || s === 'cancelled') return 'cancelled';
  return (['queued', 'scheduled', 'running', 'completed', 'failed'] as const).find((x) => x === s) ?? (s === 'enqueued' ? 'queued' : 'unknown');
}

function quote(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

/** Every page of a registry query, each page paced as one query. */
async function allPages(registry: ServiceRegistry, pacer: Pacer, sql: string, what: string): Promise<Record<string, unknown>[]> {
  const query = registry.createQuery(sql, 100);
  const rows: Record<string, unknown>[] = [];
  let token: string | undefined;
  do {
    const page = await pacer.run('query', async () => {
      try {
        // The SDK's Query keeps its own continuation token; a retried page passes it explicitly.
        return token === undefined ? await query.next() : await query.next(token);
      } catch (err) {
        throw toHubCallError(err, what);
      }
    });
    rows.push(...(page.result as Record<string, unknown>[]));
    token = query.continuationToken ?? undefined;
  } while (query.hasMoreResults);
  return rows;
}

/**
 * The rollout's hub port over azure-iothub's Registry, JobClient and Client, each call paced by
 * `pacer`, each client pointed at the hub's port and CA by service/hub-connection.ts.
 */
export function iothubRolloutHub(target: HubTarget, pacer: Pacer): RolloutHub {
  const registry = serviceRegistry(target);
  const client = serviceClient(target);
  const jobs = serviceJobClient(target);
  const call = async <T>(op: Parameters<Pacer['run']>[0], what: string, fn: () => Promise<T>): Promise<T> =>
    pacer.run(op, async () => {
      try {
        return await fn();
      } catch (err) {
        throw toHubCallError(err, what);
      }
    });

  return {
    async queryTwins(condition) {
      const sql = condition === null ? 'SELECT * FROM devices' : `SELECT * FROM devices WHERE ${condition}`;
      return (await allPages(registry, pacer, sql, `query ${sql}`)).map(twinOf);
    },
    async getTwin(deviceId) {
      const { responseBody } = await call('twinRead', `read the twin of '${deviceId}'`, () => registry.getTwin(deviceId));
      return twinOf(responseBody as unknown as Record<string, unknown>);
    },
    async updateTwin(deviceId, patch, etag) {
      const { responseBody } = await call('twinUpdate', `update the twin of '${deviceId}'`, () => registry.updateTwin(deviceId, patch, etag ?? '*'));
      return twinOf(responseBody as unknown as Record<string, unknown>);
    },
    async createDevice(deviceId) {
      // Disabled: nothing can connect as the record's holder and write to its twin.
      await call('identity', `register '${deviceId}'`, () => registry.create({ deviceId, status: 'disabled' }));
    },
    async scheduleMethodJob(jobId, queryCondition, method, maxExecutionTimeInSeconds) {
      await call('jobOperation', `schedule job '${jobId}'`, () => jobs.scheduleDeviceMethod(jobId, queryCondition, method, new Date(), maxExecutionTimeInSeconds));
    },
    async getJob(jobId) {
      try {
        const { jobStatus: result } = await call('jobOperation', `read job '${jobId}'`, () => jobs.getJob(jobId));
        const r = result as unknown as Record<string, unknown>;
        const stats = r.deviceJobStatistics as JobInfo['stats'] | undefined;
        return { jobId, status: jobStatus(r.status), stats, failureReason: typeof r.failureReason === 'string' ? r.failureReason : undefined };
      } catch (err) {
        if (err instanceof HubCallError && err.kind === 'notFound') return null;
        throw err;
      }
    },
    async cancelJob(jobId) {
      await call('jobOperation', `cancel job '${jobId}'`, () => jobs.cancelJob(jobId));
    },
    async jobDeviceResults(jobId) {
      const sql = `SELECT * FROM devices.jobs WHERE devices.jobs.jobId = ${quote(jobId)}`;
      return (await allPages(registry, pacer, sql, `the device results of job '${jobId}'`)).map(jobDeviceResult);
    },
    async invokeMethod(deviceId, method) {
      const { result } = await call('method', `invoke ${method.methodName} on '${deviceId}'`, () => client.invokeDeviceMethod(deviceId, method));
      const r = result as { status: number; payload: unknown };
      return { status: r.status, payload: r.payload };
    },
    async addConfiguration(spec) {
      const configuration = {
        id: spec.id,
        schemaVersion: '1.0',
        labels: spec.labels,
        content: { deviceContent: Object.fromEntries(Object.entries(spec.desiredPatch).map(([k, v]) => [`properties.desired.${k}`, v])) },
        targetCondition: spec.targetCondition,
        priority: spec.priority,
        metrics: { queries: spec.metrics },
      };
      await call('configuration', `create configuration '${spec.id}'`, () => registry.addConfiguration(configuration as never));
    },
    async getConfiguration(id) {
      try {
        const { responseBody } = await call('configuration', `read configuration '${id}'`, () => registry.getConfiguration(id));
        const c = responseBody as unknown as { targetCondition?: string; metrics?: { results?: Record<string, number> }; systemMetrics?: { results?: Record<string, number> } };
        return { id, targetCondition: String(c.targetCondition ?? ''), metrics: c.metrics?.results ?? {}, systemMetrics: c.systemMetrics?.results ?? {} };
      } catch (err) {
        if (err instanceof HubCallError && err.kind === 'notFound') return null;
        throw err;
      }
    },
    async removeConfiguration(id) {
      await call('configuration', `delete configuration '${id}'`, () => registry.removeConfiguration(id));
    },
  };
}

/** One row of `devices.jobs`, as IoT Hub documents it (outcome.deviceMethodResponse, error). */
export function jobDeviceResult(raw: Record<string, unknown>): JobDeviceResult {
  const outcome = (raw.outcome ?? {}) as { deviceMethodResponse?: { status?: number; payload?: unknown } };
  const error = (raw.error ?? {}) as { code?: unknown; description?: unknown; message?: unknown };
  return {
    deviceId: String(raw.deviceId),
    status: String(raw.status ?? 'unknown').toLowerCase(),
    methodStatus: typeof outcome.deviceMethodResponse?.status === 'number' ? outcome.deviceMethodResponse.status : undefined,
    methodPayload: outcome.deviceMethodResponse?.payload,
    errorCode: error.code !== undefined ? String(error.code) : undefined,
    errorMessage: error.description !== undefined ? String(error.description) : error.message !== undefined ? String(error.message) : undefined,
  };
}
