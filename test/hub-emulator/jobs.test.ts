import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client as DeviceClient } from 'azure-iot-device';
import type { JobClient, Registry } from 'azure-iothub';
import type { Query } from 'azure-iothub/dist/query.js';
import { addDevice, startHub, type RunningHub } from '../../src/hub-emulator/index.js';
import { serviceRegistry } from '../../src/service/hub-connection.js';
import { deviceClient, eventually, jobClient, rawRest, removeDir, startTestHub, tempDir } from './helpers.js';

const API = 'api-version=2021-04-12';
type Row = Record<string, any>;

/** The SDK's Query.next() without an argument starts over: pass the continuation token explicitly. */
function nextPage(query: Query) {
  return query.continuationToken ? query.next(query.continuationToken) : query.next();
}

async function allRows(registry: Registry, sql: string, pageSize?: number): Promise<{ rows: Row[]; pages: number }> {
  const query = registry.createQuery(sql, pageSize);
  const rows: Row[] = [];
  let pages = 0;
  do {
    const { result } = await nextPage(query);
    rows.push(...(result as Row[]));
    pages++;
  } while (query.hasMoreResults);
  return { rows, pages };
}

async function finished(jobs: JobClient, jobId: string): Promise<Row> {
  let job: Row = {};
  await eventually(
    async () => {
      job = (await jobs.getJob(jobId)).jobStatus as unknown as Row;
      return ['completed', 'failed', 'cancelled'].includes(job.status);
    },
    30_000,
    `job ${jobId} to finish`,
  );
  return job;
}

describe('jobs (/jobs/v2) through the real JobClient', () => {
  let dir: string;
  let hub: RunningHub;
  let registry: Registry;
  let jobs: JobClient;
  const devices: DeviceClient[] = [];
  const calls: string[] = [];

  async function online(id: string): Promise<DeviceClient> {
    const d = await deviceClient(hub, await addDevice(dir, id));
    await d.open();
    d.onDeviceMethod('firmwareUpdate', (req, res) => {
      calls.push(id);
      void res.send(200, { updateId: `u-${id}`, got: req.payload });
    });
    devices.push(d);
    return d;
  }

  beforeAll(async () => {
    dir = await tempDir();
    hub = await startTestHub(dir);
    registry = serviceRegistry(hub.info);
    jobs = await jobClient(hub);
    await online('job-1');
    await online('job-2');
    await addDevice(dir, 'job-3'); // registered, never connected
    await addDevice(dir, 'job-4');
    for (const id of ['job-1', 'job-2', 'job-3']) await registry.updateTwin(id, { tags: { fleet: 'a' } }, '*');
    await registry.updateTwin('job-4', { tags: { fleet: 'b' } }, '*');
    // The methods subscription reaches the hub shortly after open().
    await eventually(() => hub.connectedDevices().length === 2, 5000, 'two devices online');
  });
  afterAll(async () => {
    for (const d of devices) await d.close();
    await hub?.close();
    await removeDir(dir);
  });

  it('runs a method over the devices its condition matches; device records carry the answers, offline devices fail', async () => {
    calls.length = 0;
    const { jobStatus } = await jobs.scheduleDeviceMethod('m1', "tags.fleet = 'a'", { methodName: 'firmwareUpdate', payload: { v: 2 }, responseTimeoutInSeconds: 10 });
    expect(['queued', 'running']).toContain((jobStatus as unknown as Row).status);
    const job = await finished(jobs, 'm1');
    expect(job.status).toBe('completed'); // a job completes however many devices failed
    expect(job.type).toBe('scheduleDeviceMethod');
    expect(job.deviceJobStatistics).toEqual({ deviceCount: 3, failedCount: 1, succeededCount: 2, runningCount: 0, pendingCount: 0 });
    expect(calls.sort()).toEqual(['job-1', 'job-2']);

    const { rows } = await allRows(registry, "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'm1'");
    const byId = Object.fromEntries(rows.map((r) => [r.deviceId, r]));
    expect(Object.keys(byId).sort()).toEqual(['job-1', 'job-2', 'job-3']);
    expect(byId['job-1']).toMatchObject({ jobId: 'm1', jobType: 'scheduleDeviceMethod', status: 'completed' });
    expect(byId['job-1'].outcome.deviceMethodResponse).toEqual({ status: 200, payload: { updateId: 'u-job-1', got: { v: 2 } } });
    expect(byId['job-3'].status).toBe('failed');
    expect(byId['job-3'].error.code).toBe('DeviceNotOnline');
    expect(byId['job-3'].outcome.deviceMethodResponse).toBeNull();

    const failed = await allRows(registry, "SELECT deviceId FROM devices.jobs WHERE devices.jobs.jobId = 'm1' AND devices.jobs.status = 'failed'");
    expect(failed.rows).toEqual([{ deviceId: 'job-3' }]);
  });

  it('waits connectTimeoutInSeconds for an offline device to connect (REST: the SDK does not send it)', async () => {
    const put = await rawRest(hub, 'PUT', `/jobs/v2/m2?${API}`, {
      body: JSON.stringify({
        jobId: 'm2',
        type: 'scheduleDeviceMethod',
        queryCondition: "deviceId IN ['job-3']",
        cloudToDeviceMethod: { methodName: 'firmwareUpdate', payload: null, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 20 },
      }),
    });
    expect(put.status).toBe(200);
    await eventually(async () => ((await jobs.getJob('m2')).jobStatus as unknown as Row).deviceJobStatistics.runningCount === 1, 10_000, 'the call to wait');
    await online('job-3');
    const job = await finished(jobs, 'm2');
    expect(job.deviceJobStatistics).toMatchObject({ deviceCount: 1, succeededCount: 1, failedCount: 0 });
    const bad = await rawRest(hub, 'PUT', `/jobs/v2/m3?${API}`, {
      body: JSON.stringify({ type: 'scheduleDeviceMethod', queryCondition: '*', cloudToDeviceMethod: { methodName: 'x', connectTimeoutInSeconds: 301 } }),
    });
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('connectTimeoutInSeconds must be a whole number of seconds from 0 to 300');
  });

  it('updates tags and desired properties with scheduleTwinUpdate; a connected device gets the desired patch', async () => {
    const twin = await devices[0].getTwin();
    const seen: unknown[] = [];
    twin.on('properties.desired', (d: unknown) => seen.push(d));
    await jobs.scheduleTwinUpdate('t1', "tags.fleet = 'a'", { tags: { wave: 1 }, properties: { desired: { piota: { firmware: { id: 'r1' } } } } } as never);
    const job = await finished(jobs, 't1');
    expect(job.type).toBe('scheduleUpdateTwin');
    expect(job.deviceJobStatistics).toMatchObject({ deviceCount: 3, succeededCount: 3 });
    const { rows } = await allRows(registry, 'SELECT deviceId FROM devices WHERE tags.wave = 1');
    expect(rows.map((r) => r.deviceId).sort()).toEqual(['job-1', 'job-2', 'job-3']);
    const t4 = await registry.getTwin('job-4');
    expect(t4.responseBody.tags).toEqual({ fleet: 'b' });
    await eventually(() => seen.some((d) => (d as Row).piota?.firmware?.id === 'r1'), 5000, 'the desired patch on the device');
  });

  it('a job with a future startTime is scheduled; cancel stops it before it touches a device', async () => {
    calls.length = 0;
    await jobs.scheduleDeviceMethod('later', "tags.fleet = 'a'", { methodName: 'firmwareUpdate', payload: null }, new Date(Date.now() + 60_000), 600);
    expect(((await jobs.getJob('later')).jobStatus as unknown as Row).status).toBe('scheduled');
    const { jobStatus } = await jobs.cancelJob('later');
    expect((jobStatus as unknown as Row).status).toBe('cancelled');
    expect(((await jobs.getJob('later')).jobStatus as unknown as Row).endTime).toEqual(expect.any(String));
    expect(calls).toEqual([]);
  });

  it('fails the devices still without a result when maxExecutionTimeInSeconds has passed', async () => {
    // No handler for 'nothing' on the device: the call is never answered within the job's 2 s.
    await jobs.scheduleDeviceMethod('short', "deviceId = 'job-1'", { methodName: 'nothing', payload: null, responseTimeoutInSeconds: 60 }, new Date(), 2);
    const job = await finished(jobs, 'short');
    expect(job.status).toBe('failed');
    expect(job.failureReason).toContain('maxExecutionTimeInSeconds (2 s)');
    expect(job.deviceJobStatistics).toMatchObject({ deviceCount: 1, failedCount: 1 });
    const { rows } = await allRows(registry, "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'short'");
    expect(rows[0].error.code).toBe('JobRunTimeout');
  });

  it('lists jobs by type and status, page by page', async () => {
    // The SDK's JobStatus type says 'finished'; IoT Hub (and its REST reference) say 'completed'.
    const query = jobs.createQuery('scheduleDeviceMethod', 'completed' as never, 1);
    const ids: string[] = [];
    let pages = 0;
    while (query.hasMoreResults) {
      const { result } = await nextPage(query);
      ids.push(...(result as Row[]).map((j) => j.jobId));
      pages++;
    }
    expect(ids.sort()).toEqual(['m1', 'm2']);
    expect(pages).toBe(2);
    const cancelled = await jobs.createQuery(undefined, 'cancelled').next();
    expect((cancelled.result as Row[]).map((j) => j.jobId)).toEqual(['later']);
  });

  it('answers bad requests as IoT Hub does', async () => {
    const dup = await jobs.scheduleTwinUpdate('t1', '*', { tags: { x: 1 } } as never).then(
      () => undefined,
      (e: Error & { response?: { statusCode: number } }) => e,
    );
    expect(dup?.response?.statusCode).toBe(409);
    const missing = await rawRest(hub, 'GET', `/jobs/v2/nope?${API}`);
    expect(missing.status).toBe(404);
    expect(missing.text).toContain('JobNotFound');
    const cond = await rawRest(hub, 'PUT', `/jobs/v2/bad?${API}`, {
      body: JSON.stringify({ type: 'scheduleUpdateTwin', queryCondition: "tags.x == 'y'", updateTwin: { tags: {} } }),
    });
    expect(cond.status).toBe(400);
    expect(cond.text).toContain('queryCondition');
  });

  it('keeps jobs and device records across a restart of the hub', async () => {
    const { info } = hub;
    for (const d of devices.splice(0)) await d.close();
    await hub.close();
    hub = await startHub({ dir, mqttPort: info.mqttPort, httpsPort: info.httpsPort });
    jobs = await jobClient(hub);
    registry = serviceRegistry(hub.info);
    expect(((await jobs.getJob('m1')).jobStatus as unknown as Row).deviceJobStatistics.succeededCount).toBe(2);
    const { rows } = await allRows(registry, "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'm1'", 2);
    expect(rows).toHaveLength(3);
  });
});

describe('a job running when the hub stops', () => {
  /** The job, or undefined while S1's jobs-operations rate (100/min) refuses the read. */
  async function jobOf(jobs: JobClient, id: string): Promise<Row | undefined> {
    try {
      return (await jobs.getJob(id)).jobStatus as unknown as Row;
    } catch (e) {
      if ((e as Error).name === 'ThrottlingError') return undefined;
      throw e;
    }
  }

  it('goes on after a restart with the devices it had not reached', async () => {
    const dir = await tempDir();
    let hub: RunningHub | undefined;
    try {
      for (let i = 1; i <= 30; i++) await addDevice(dir, `rs-${String(i).padStart(2, '0')}`);
      // S1 paces the job at 10 devices a second, so it is still running when the hub stops.
      hub = await startTestHub(dir, { tier: 'S1' });
      let jobs = await jobClient(hub);
      await jobs.scheduleTwinUpdate('resume', '*', { tags: { resumed: true } } as never);
      await eventually(async () => ((await jobOf(jobs, 'resume'))?.deviceJobStatistics.succeededCount ?? 0) > 0, 10_000, 'a first device');
      const { info } = hub;
      await hub.close();
      hub = undefined;
      hub = await startHub({ dir, mqttPort: info.mqttPort, httpsPort: info.httpsPort, tier: 'S1' });
      jobs = await jobClient(hub);
      const before = (await jobOf(jobs, 'resume'))!.deviceJobStatistics;
      expect(before.deviceCount).toBe(30);
      expect(before.pendingCount).toBeGreaterThan(0);
      let job: Row | undefined;
      await eventually(
        async () => {
          job = await jobOf(jobs, 'resume');
          return job?.status === 'completed';
        },
        20_000,
        'the job to complete after the restart',
      );
      // Updates in flight when the hub stopped finished and were saved before it closed.
      expect(job!.deviceJobStatistics).toMatchObject({ deviceCount: 30, succeededCount: 30, failedCount: 0 });
      await new Promise((r) => setTimeout(r, 3100)); // S1 allows one query every 3 s
      const { rows } = await allRows(serviceRegistry(hub.info), 'SELECT deviceId FROM devices WHERE tags.resumed = true');
      expect(rows.length).toBe(30);
    } finally {
      await hub?.close();
      await removeDir(dir);
    }
  });
});
