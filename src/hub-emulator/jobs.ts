import { join } from 'node:path';
import { readStateFile, writeStateFile } from '../os/state-file.js';
import { HubError } from './errors.js';
import type { HubCore, MethodRequest } from './hub-core.js';
import { parseMethodRequest, wholeSeconds } from './method-request.js';
import { parseCondition } from './query.js';
import { maxActiveJobs, type Throttle } from './throttle.js';
import { isObject, type Json, type JsonObject } from './twin.js';

const SCHEMA = 1;
/** IoT Hub keeps a job's history for 30 days. */
export const JOB_RETENTION_MS = 30 * 24 * 3600 * 1000;
/** The emulator's cap on device operations of one job in flight at once (method calls wait for answers). */
const MAX_IN_FLIGHT = 500;
const SAVE_DELAY_MS = 200;

export type JobType = 'scheduleDeviceMethod' | 'scheduleUpdateTwin';
export type JobStatus = 'queued' | 'scheduled' | 'running' | 'completed' | 'failed' | 'cancelled';
/** The device job's status as the SDKs' DeviceJobStatus spells it. */
export type DeviceJobStatus = 'pending' | 'running' | 'completed' | 'failed' | 'canceled';

export interface DeviceJob {
  deviceId: string;
  jobId: string;
  jobType: JobType;
  status: DeviceJobStatus;
  startTimeUtc?: string;
  endTimeUtc?: string;
  createdDateTimeUtc: string;
  lastUpdatedDateTimeUtc: string;
  outcome: { deviceMethodResponse: { status: number; payload: Json } | null };
  error?: { code: string; description: string };
}


export interface Job {
  jobId: string;
  type: JobType;
  queryCondition: string;
  createdTime: string;
  startTime: string;
  endTime?: string;
  maxExecutionTimeInSeconds: number;
  cloudToDeviceMethod?: MethodRequest;
  updateTwin?: JsonObject;
  status: JobStatus;
  failureReason?: string;
  statusMessage?: string;
  /** Filled when the job starts: the devices its query condition matched then, in id order. */
  devices: DeviceJob[];
}

const ACTIVE: readonly JobStatus[] = ['queued', 'scheduled', 'running'];

export interface JobsOptions {
  core: HubCore;
  dir: string;
  throttle: Throttle;
  /** The twins a query condition is evaluated over (service view, with configurations). */
  twins(): Promise<JsonObject[]>;
  /** Called after a twin-update job changed a device's twin (configurations re-evaluate on tags). */
  twinChanged(deviceId: string): void;
  log(message: string): void;
}

function validateSaved(data: unknown): Job[] {
  if (!Array.isArray(data)) throw new Error('expected a list of jobs');
  for (const j of data as Partial<Job>[]) {
    if (typeof j?.jobId !== 'string' || typeof j.status !== 'string' || !Array.isArray(j.devices)) throw new Error('every job needs jobId, status and devices');
  }
  return data as Job[];
}

/**
 * IoT Hub's jobs (`/jobs/v2`): a direct method or a twin update run over every device a query
 * condition matches when the job starts, at the tier's pace for job device operations, with a
 * record per device that `SELECT * FROM devices.jobs` returns. Jobs are kept in DIR/jobs.json
 * for 30 days after they end; a job that was running when the hub stopped goes on after a restart.
 */
export class JobManager {
  private readonly jobs = new Map<string, Job>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly file: string;
  private saving: Promise<void> = Promise.resolve();
  private saveTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Device operations under way, across jobs: close() waits for them so their results are saved. */
  private readonly operations = new Set<Promise<void>>();

  private constructor(private readonly options: JobsOptions) {
    this.file = join(options.dir, 'jobs.json');
  }

  static async open(options: JobsOptions): Promise<JobManager> {
    const manager = new JobManager(options);
    const saved = (await readStateFile(manager.file, SCHEMA, validateSaved)) ?? [];
    const now = Date.now();
    for (const job of saved) {
      if (job.endTime && now - Date.parse(job.endTime) > JOB_RETENTION_MS) continue;
      manager.jobs.set(job.jobId, job);
    }
    for (const job of manager.jobs.values()) manager.resume(job);
    return manager;
  }

  // --- REST operations --------------------------------------------------------------------------

  async create(jobId: string, body: Json | undefined): Promise<JsonObject> {
    if (!isObject(body)) throw new HubError('ArgumentInvalid', 'job: expected a JSON object body');
    if (body.jobId !== undefined && body.jobId !== jobId) {
      throw new HubError('ArgumentInvalid', `jobId '${String(body.jobId)}' in the body does not match '${jobId}' in the path`);
    }
    if (!/^[\w\-.:+%#*?!(),=@;$']{1,128}$/.test(jobId)) {
      throw new HubError('ArgumentInvalid', `job id '${jobId}' must be 1 to 128 letters, digits or -.:+%_#*?!(),=@;$'`);
    }
    const type = body.type === 'scheduleDeviceMethod' || body.type === 'scheduleDirectMethod' || body.type === 'scheduleDirectRequest'
      ? 'scheduleDeviceMethod'
      : body.type === 'scheduleUpdateTwin' || body.type === 'scheduleTwinUpdate'
        ? 'scheduleUpdateTwin'
        : undefined;
    if (!type) throw new HubError('ArgumentInvalid', `job type '${String(body.type)}' is not one of scheduleDeviceMethod, scheduleUpdateTwin`);
    if (typeof body.queryCondition !== 'string' || body.queryCondition.trim() === '') {
      throw new HubError('ArgumentInvalid', 'job: queryCondition must be a condition such as "deviceId IN [\'a\', \'b\']" or "tags.site = \'lab\'"');
    }
    parseCondition(body.queryCondition, 'queryCondition');
    const created = new Date();
    let start = created;
    if (body.startTime !== undefined && body.startTime !== null) {
      if (typeof body.startTime !== 'string' || Number.isNaN(Date.parse(body.startTime))) {
        throw new HubError('ArgumentInvalid', 'job: startTime must be an ISO-8601 date');
      }
      start = new Date(Math.max(Date.parse(body.startTime), created.getTime()));
    }
    const job: Job = {
      jobId,
      type,
      queryCondition: body.queryCondition,
      createdTime: created.toISOString(),
      startTime: start.toISOString(),
      maxExecutionTimeInSeconds: wholeSeconds(body.maxExecutionTimeInSeconds, 'maxExecutionTimeInSeconds', 3600, 1, 7 * 24 * 3600),
      status: 'queued',
      devices: [],
    };
    if (type === 'scheduleDeviceMethod') {
      const { payloadBytes: _size, ...request } = parseMethodRequest(body.cloudToDeviceMethod, 'cloudToDeviceMethod');
      job.cloudToDeviceMethod = request;
    }
    else {
      if (!isObject(body.updateTwin)) throw new HubError('ArgumentInvalid', 'job: updateTwin must be a twin patch object ({tags?, properties: {desired?}})');
      job.updateTwin = body.updateTwin;
    }
    if (this.jobs.has(jobId)) throw new HubError('JobAlreadyExists', `A job with id '${jobId}' already exists`);
    const active = [...this.jobs.values()].filter((j) => ACTIVE.includes(j.status)).length;
    const max = maxActiveJobs(this.options.throttle.tier);
    if (active >= max) {
      throw new HubError('ThrottlingMaxActiveJobCountExceeded', `the ${this.options.throttle.tier} tier runs at most ${max} job(s) at once; ${active} active`);
    }
    this.jobs.set(jobId, job);
    await this.saveNow();
    this.resume(job);
    return view(job);
  }

  get(jobId: string): JsonObject {
    return view(this.find(jobId));
  }

  async cancel(jobId: string): Promise<JsonObject> {
    const job = this.find(jobId);
    if (ACTIVE.includes(job.status)) {
      job.status = 'cancelled';
      job.endTime = new Date().toISOString();
      for (const d of job.devices) if (d.status === 'pending') this.finishDevice(d, 'canceled');
      await this.saveNow();
    }
    return view(job);
  }

  /** Jobs, newest first, optionally of one type and status. */
  list(type?: string, status?: string): JsonObject[] {
    return [...this.jobs.values()]
      .filter((j) => (!type || j.type === type || (type === 'scheduleTwinUpdate' && j.type === 'scheduleUpdateTwin')) && (!status || j.status === status))
      .sort((a, b) => (a.createdTime < b.createdTime ? 1 : a.createdTime > b.createdTime ? -1 : a.jobId < b.jobId ? -1 : 1))
      .map(view);
  }

  /** Every device job record, for queries over devices.jobs. */
  deviceJobs(): JsonObject[] {
    const rows: JsonObject[] = [];
    for (const job of this.jobs.values()) for (const d of job.devices) rows.push(d as unknown as JsonObject);
    return rows;
  }

  private find(jobId: string): Job {
    const job = this.jobs.get(jobId);
    if (!job) throw new HubError('JobNotFound', `Job ${jobId} not found`);
    return job;
  }

  // --- running ----------------------------------------------------------------------------------

  private later(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, Math.max(0, ms));
    this.timers.add(timer);
  }

  /** Schedules (or, after a restart, continues) a job that is not finished. */
  private resume(job: Job): void {
    if (!ACTIVE.includes(job.status) || this.closed) return;
    const wait = Date.parse(job.startTime) - Date.now();
    if (job.status === 'queued' && wait > 0) job.status = 'scheduled';
    this.later(wait, () => void this.run(job).catch((err: Error) => this.fail(job, `the emulator could not run the job: ${err.message}`)));
    const deadline = Date.parse(job.startTime) + job.maxExecutionTimeInSeconds * 1000 - Date.now();
    this.later(deadline, () => this.expire(job));
  }

  private async run(job: Job): Promise<void> {
    if (!ACTIVE.includes(job.status) || this.closed) return;
    if (job.status !== 'running') {
      job.status = 'running';
      const filter = parseCondition(job.queryCondition, 'queryCondition');
      const now = new Date().toISOString();
      job.devices = (await this.options.twins())
        .filter(filter)
        .map((t) => t.deviceId as string)
        .sort()
        .map((deviceId) => ({
          deviceId,
          jobId: job.jobId,
          jobType: job.type,
          status: 'pending',
          createdDateTimeUtc: now,
          lastUpdatedDateTimeUtc: now,
          outcome: { deviceMethodResponse: null },
        }));
      await this.saveNow();
    }
    for (const d of job.devices) {
      // Calls cut short by a hub restart are not repeated: the device may have acted on them.
      if (d.status === 'running') this.finishDevice(d, 'failed', { code: 'ServerError', description: 'the hub stopped while this device operation was in flight' });
    }
    const inFlight = new Set<Promise<void>>();
    for (const d of job.devices) {
      if (d.status !== 'pending') continue;
      await this.options.throttle.acquire('jobDeviceOperations');
      while (inFlight.size >= MAX_IN_FLIGHT) await Promise.race(inFlight);
      if (job.status !== 'running' || this.closed) break;
      const op = this.runDevice(job, d).finally(() => {
        inFlight.delete(op);
        this.operations.delete(op);
      });
      inFlight.add(op);
      this.operations.add(op);
    }
    await Promise.all(inFlight);
    this.settle(job);
  }

  private async runDevice(job: Job, d: DeviceJob): Promise<void> {
    d.status = 'running';
    d.startTimeUtc = new Date().toISOString();
    d.lastUpdatedDateTimeUtc = d.startTimeUtc;
    this.save();
    try {
      if (job.cloudToDeviceMethod) {
        const result = await this.options.core.invokeMethod(d.deviceId, job.cloudToDeviceMethod);
        if (d.status !== 'running') return; // the job expired meanwhile
        d.outcome = { deviceMethodResponse: { status: result.status, payload: result.payload } };
      } else {
        await this.options.core.servicePatch(d.deviceId, job.updateTwin!, '*');
        this.options.twinChanged(d.deviceId);
      }
      if (d.status === 'running') this.finishDevice(d, 'completed');
    } catch (err) {
      if (d.status !== 'running') return;
      // A call the stopping hub cut short is not the device's failure to answer.
      const e = this.closed
        ? new HubError('ServerError', 'the hub stopped while this device operation was in flight')
        : err instanceof HubError
          ? err
          : new HubError('ServerError', (err as Error).message);
      this.finishDevice(d, 'failed', { code: e.code, description: e.message });
    }
    this.save();
  }

  private finishDevice(d: DeviceJob, status: DeviceJobStatus, error?: { code: string; description: string }): void {
    d.status = status;
    d.endTimeUtc = new Date().toISOString();
    d.lastUpdatedDateTimeUtc = d.endTimeUtc;
    if (error) d.error = error;
  }

  /** A running job whose devices all have a result completes (however many of them failed). */
  private settle(job: Job): void {
    if (job.status !== 'running' || job.devices.some((d) => d.status === 'pending' || d.status === 'running')) return;
    job.status = 'completed';
    job.endTime = new Date().toISOString();
    this.save();
  }

  private expire(job: Job): void {
    if (!ACTIVE.includes(job.status)) return;
    const reason = `maxExecutionTimeInSeconds (${job.maxExecutionTimeInSeconds} s) elapsed before every device had a result`;
    for (const d of job.devices) {
      if (d.status === 'pending' || d.status === 'running') this.finishDevice(d, 'failed', { code: 'JobRunTimeout', description: reason });
    }
    this.fail(job, reason);
  }

  private fail(job: Job, reason: string): void {
    if (!ACTIVE.includes(job.status)) return;
    job.status = 'failed';
    job.failureReason = reason;
    job.endTime = new Date().toISOString();
    this.options.log(`job ${job.jobId} failed: ${reason}`);
    this.save();
  }

  // --- persistence ------------------------------------------------------------------------------

  /** Coalesced save: device results arrive by the hundred, one write covers them. */
  private save(): void {
    if (this.saveTimer || this.closed) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = undefined;
      void this.saveNow().catch((err: Error) => this.options.log(`cannot save jobs: ${err.message}`));
    }, SAVE_DELAY_MS);
  }

  /** Saves now (after any save in progress); resolves when the file is on disk. */
  saveNow(): Promise<void> {
    const data = [...this.jobs.values()];
    const text = JSON.parse(JSON.stringify(data)) as Job[];
    this.saving = this.saving.catch(() => undefined).then(() => writeStateFile(this.file, SCHEMA, text));
    return this.saving;
  }

  /** Stops starting device operations, waits for those under way (the hub core fails its method calls first), saves. */
  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    if (this.saveTimer) clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    await Promise.allSettled([...this.operations]);
    await this.saveNow();
  }
}

/** A job as GET /jobs/v2/{id} answers it. */
function view(job: Job): JsonObject {
  const stats = { deviceCount: job.devices.length, failedCount: 0, succeededCount: 0, runningCount: 0, pendingCount: 0 };
  for (const d of job.devices) {
    if (d.status === 'failed') stats.failedCount++;
    else if (d.status === 'completed') stats.succeededCount++;
    else if (d.status === 'running') stats.runningCount++;
    else if (d.status === 'pending') stats.pendingCount++;
  }
  const out: JsonObject = {
    jobId: job.jobId,
    type: job.type,
    status: job.status,
    queryCondition: job.queryCondition,
    createdTime: job.createdTime,
    startTime: job.startTime,
    maxExecutionTimeInSeconds: job.maxExecutionTimeInSeconds,
    deviceJobStatistics: stats,
  };
  if (job.endTime) out.endTime = job.endTime;
  if (job.cloudToDeviceMethod) out.cloudToDeviceMethod = job.cloudToDeviceMethod as unknown as JsonObject;
  if (job.updateTwin) out.updateTwin = job.updateTwin;
  if (job.failureReason) out.failureReason = job.failureReason;
  if (job.statusMessage) out.statusMessage = job.statusMessage;
  return out;
}
