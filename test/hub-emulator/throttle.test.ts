import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Client as DeviceClient } from 'azure-iot-device';
import type { HubInfo, RunningHub } from '../../src/hub-emulator/index.js';
import { addDevice } from '../../src/hub-emulator/index.js';
import { Throttle, tierLimits } from '../../src/hub-emulator/throttle.js';
import { serviceRegistry } from '../../src/service/hub-connection.js';
import { deviceClient, eventually, jobClient, rawRest, removeDir, startTestHub, tempDir } from './helpers.js';

const API = 'api-version=2021-04-12';
const bin = fileURLToPath(new URL('../../bin/piota.js', import.meta.url));
type Row = Record<string, any>;

describe('the throttle (token bucket per category)', () => {
  it('refuses past one second of the rate, refills at the rate, counts what it did', () => {
    let now = 1_000_000;
    const t = new Throttle('S1', 1, () => now);
    expect(t.limit('twinUpdates')).toBe(50);
    for (let i = 0; i < 50; i++) t.take('twinUpdates');
    expect(() => t.take('twinUpdates')).toThrow(/ThrottlingException|S1 tier allows 50\/s twinUpdates/);
    now += 100; // 5 tokens back
    for (let i = 0; i < 5; i++) t.take('twinUpdates');
    expect(() => t.take('twinUpdates')).toThrow();
    now += 3000; // the bucket holds one second at most
    for (let i = 0; i < 50; i++) t.take('twinUpdates');
    expect(() => t.take('twinUpdates')).toThrow();
    const stats = t.stats() as Row;
    expect(stats.tier).toBe('S1');
    expect(stats.categories.twinUpdates).toMatchObject({ limitPerSecond: 50, admitted: 105, throttled: 3, peakPerSecond: 55 });
  });

  it('per-minute limits admit one call and then one every 60/limit seconds', () => {
    let now = 0;
    const t = new Throttle('S1', 1, () => now);
    t.take('queries');
    expect(() => t.take('queries')).toThrow('20/min');
    now += 2900;
    expect(() => t.take('queries')).toThrow();
    now += 200;
    t.take('queries');
  });

  it('limits scale with units as the table says, and without a tier nothing is refused', () => {
    expect(tierLimits('S1', 2).registry).toBeCloseTo(200 / 60);
    expect(tierLimits('S1', 2).twinReads).toBe(100); // not per unit on S1
    expect(tierLimits('S2', 20).twinReads).toBe(200);
    expect(tierLimits('S3', 1).jobDeviceOperations).toBe(50);
    const free = new Throttle(undefined);
    for (let i = 0; i < 1000; i++) free.take('queries');
    expect((free.stats() as Row).categories.queries).toMatchObject({ limitPerSecond: null, admitted: 1000, throttled: 0 });
  });
});

describe('a hub started with tier S1', () => {
  let dir: string;
  let hub: RunningHub;
  let device: DeviceClient;

  beforeAll(async () => {
    dir = await tempDir();
    hub = await startTestHub(dir, { tier: 'S1' });
    for (let i = 1; i <= 25; i++) await addDevice(dir, `thr-${i}`);
    device = await deviceClient(hub, await addDevice(dir, 'thr-slow'));
    await device.open();
    // Answers only after 4 s, so a job on it stays active meanwhile.
    device.onDeviceMethod('slow', (_req, res) => void setTimeout(() => void res.send(200, {}), 4000));
    await eventually(() => hub.connectedDevices().length === 1, 5000, 'the device online');
  });
  afterAll(async () => {
    await device?.close();
    await hub?.close();
    await removeDir(dir);
  });

  it('answers 429 ThrottlingException past the query rate; the SDK turns it into ThrottlingError; stats count it', async () => {
    const registry = serviceRegistry(hub.info);
    const first = await registry.createQuery('SELECT deviceId FROM devices').next();
    expect((first.result as Row[]).length).toBe(26);
    const second = await registry.createQuery('SELECT deviceId FROM devices').next().then(
      () => undefined,
      (e: Error & { response?: { statusCode: number }; responseBody?: string }) => e,
    );
    expect(second?.name).toBe('ThrottlingError');
    expect(second?.response?.statusCode).toBe(429);
    expect(second?.responseBody).toContain('ErrorCode:ThrottlingException');
    const stats = await rawRest(hub, 'GET', '/emulator/stats');
    expect(stats.status).toBe(200);
    const body = stats.json as Row;
    expect(body.tier).toBe('S1');
    expect(body.maxActiveJobs).toBe(1);
    expect(body.categories.queries).toMatchObject({ admitted: 1, throttled: 1 });
    expect(body.categories.queries.limitPerSecond).toBeCloseTo(1 / 3, 2);
  });

  it('runs one job at a time (429 ThrottlingMaxActiveJobCountExceeded) and paces job device operations at 10/s', async () => {
    const jobs = await jobClient(hub);
    /** Retries while the jobs-operations rate (100/min) refuses, as a paced client would. */
    const paced = async <T>(fn: () => Promise<T>): Promise<T> => {
      for (;;) {
        try {
          return await fn();
        } catch (e) {
          if (!String((e as { responseBody?: string }).responseBody).includes('ThrottlingException')) throw e;
          await new Promise((r) => setTimeout(r, 700));
        }
      }
    };
    await paced(() => jobs.scheduleDeviceMethod('slow-1', "deviceId = 'thr-slow'", { methodName: 'slow', payload: null, responseTimeoutInSeconds: 30 }));
    const refused = await paced(() => jobs.scheduleTwinUpdate('second', '*', { tags: { x: 1 } } as never)).then(
      () => undefined,
      (e: Error & { response?: { statusCode: number }; responseBody?: string }) => e,
    );
    expect(refused?.response?.statusCode).toBe(429);
    expect(refused?.responseBody).toContain('ThrottlingMaxActiveJobCountExceeded');
    await eventually(async () => ((await paced(() => jobs.getJob('slow-1'))).jobStatus as unknown as Row).status === 'completed', 20_000, 'the slow job');

    const before = ((await rawRest(hub, 'GET', '/emulator/stats')).json as Row).categories.jobDeviceOperations;
    const started = Date.now();
    await paced(() => jobs.scheduleTwinUpdate('many', "deviceId >= 'thr-1' AND deviceId <= 'thr-9'", { tags: { touched: true } } as never));
    let job: Row = {};
    await eventually(
      async () => {
        job = (await paced(() => jobs.getJob('many'))).jobStatus as unknown as Row;
        return job.status === 'completed';
      },
      20_000,
      'the 25-device job',
    );
    const elapsed = Date.now() - started;
    expect(job.deviceJobStatistics).toMatchObject({ deviceCount: 25, succeededCount: 25 });
    const after = ((await rawRest(hub, 'GET', '/emulator/stats')).json as Row).categories.jobDeviceOperations;
    expect(after.admitted - before.admitted).toBe(25);
    expect(after.delayed).toBeGreaterThan(before.delayed);
    // 25 operations at 10/s with one second of burst take at least 1.5 s (a lower bound: load only slows it).
    expect(elapsed).toBeGreaterThanOrEqual(1400);
    expect(after.limitPerSecond).toBe(10);
  });
});

describe('piota hub start --tier', () => {
  it('refuses an unknown tier and --units without a tier, naming the option', () => {
    const bad = spawnSync(process.execPath, [bin, 'hub', 'start', '--dir', '/nonexistent/x', '--tier', 'S9'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("--tier 'S9' must be one of free, S1, S2, S3");
    const units = spawnSync(process.execPath, [bin, 'hub', 'start', '--dir', '/nonexistent/x', '--units', '2'], { encoding: 'utf8' });
    expect(units.status).toBe(2);
    expect(units.stderr).toContain('--units needs --tier');
  });

  it('starts throttled and says so; stats are served over HTTPS', async () => {
    const dir = await tempDir();
    const child = spawn(process.execPath, [bin, 'hub', 'start', '--dir', dir, '--mqtt-port', '0', '--https-port', '0', '--tier', 's2', '--units', '3', '--quiet'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      let out = '';
      child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
      await eventually(() => out.includes('throttling as'), 20_000, 'the hub to start');
      expect(out).toContain('throttling as 3 unit(s) of tier S2');
      const info = JSON.parse(await readFile(`${dir}/hub.json`, 'utf8')) as HubInfo;
      const stats = await rawRest({ info } as RunningHub, 'GET', '/emulator/stats');
      expect(stats.json).toMatchObject({ tier: 'S2', units: 3, maxActiveJobs: 5 });
      expect((stats.json as Row).categories.deviceToCloud.limitPerSecond).toBe(360);
      const noApi = await rawRest({ info } as RunningHub, 'GET', `/devices?${API}`);
      expect(noApi.status).toBe(200);
    } finally {
      const exited = new Promise((ok) => child.once('exit', ok));
      child.kill('SIGTERM');
      await exited;
      await removeDir(dir);
    }
  });
});
