import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startHub } from '../../src/hub-emulator/index.js';
import { serviceRegistry } from '../../src/service/hub-connection.js';
import { startFleet, type Fleet } from '../../src/simulator/fleet/fleet.js';
import type { RolloutStatus } from '../../src/rollout/status.js';
import { World, waitFor } from '../e2e/world.js';
import { piota } from './cli-run.js';

/**
 * The halt, offline and takeover cases run side by side (each its own fleet and rollout); the S1
 * case restarts the hub with S1's throttles, so it runs last.
 *
 * `piota rollout` end to end, as a user runs it (node bin/piota.js, its own process) against the
 * hub emulator, with part of the fleet simulated in this process (the real agent as instances):
 * waves to completion, the halt, offline devices and the desired release, a controller killed and
 * taken over by another process.
 */
const FLEET = 200;

describe('piota rollout against the emulator and an in-process fleet', () => {
  let world: World;
  let fleet: Fleet;
  let release: { url: string; version: string };
  const hubArgs = () => ['--hub-dir', world.hubDir, '--tier', 'S3', '--poll', '500ms'];
  const startArgs = (name: string, target: string, waves: string, more: string[] = []) => [
    'rollout', 'start', name, '--uri', release.url, '--version', release.version, '--target', target, '--waves', waves,
    '--halt-failure-rate', '5%', '--halt-min-failed', '2', '--wave-timeout', '3m', '--connect-timeout', '2s', '--apply-now', ...hubArgs(), ...more,
  ];
  const status = async (name: string): Promise<RolloutStatus> => {
    const r = await piota(['rollout', 'status', name, '--json', '--hub-dir', world.hubDir, '--tier', 'S3']).done;
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as RolloutStatus;
  };
  const reported = async (id: string) => ((await serviceRegistry(world.hub.info).getTwin(id)).responseBody as unknown as { properties: { reported: Record<string, any> } }).properties.reported;

  beforeAll(async () => {
    world = await World.create();
    release = await world.bundle('fw-2.0.0.piota', { version: '2.0.0', rootfsBytes: 16 * 1024, bootBytes: 4 * 1024, chunkSize: 8 * 1024 });
    fleet = await startFleet({
      dir: join(world.dir, 'fleet'), hubDir: world.hubDir, count: FLEET, prefix: 'pi', pubkey: world.key.pubFile, downloadCa: world.files.caFile,
      tags: { ring: 'big' }, seed: 7, logLevel: 'warn', watchdogMs: 300, daemonConfig: { trialTimeoutSeconds: 30, progressIntervalSeconds: 1 },
    });
    await waitFor('the fleet to connect', async () => world.hub.connectedDevices().length >= FLEET, 240_000);
  }, 300_000);

  afterAll(async () => {
    await Promise.all(others.map((f) => f.stop()));
    await fleet?.stop();
    await world?.close();
  });

  const others: Fleet[] = [];
  /** A small extra fleet on the same hub, tagged ring=PREFIX. */
  async function smallFleet(prefix: string, count: number, ratios: { failTrialRatio?: number; offlineRatio?: number } = {}): Promise<Fleet> {
    const f = await startFleet({
      dir: join(world.dir, prefix), hubDir: world.hubDir, count, prefix, pubkey: world.key.pubFile, downloadCa: world.files.caFile,
      tags: { ring: prefix }, seed: 11, logLevel: 'warn', watchdogMs: 300, daemonConfig: { trialTimeoutSeconds: 30, progressIntervalSeconds: 1 }, ...ratios,
    });
    others.push(f);
    const online = f.devices.filter((d) => d.role !== 'offline').map((d) => d.id);
    await waitFor(`fleet ${prefix} to connect`, async () => online.every((id) => world.hub.connectedDevices().includes(id)), 60_000);
    return f;
  }
  const tagsOf = async (id: string) => ((await serviceRegistry(world.hub.info).getTwin(id)).responseBody as unknown as { tags: Record<string, any> }).tags;

  it(`rolls ${FLEET} devices out in waves of 1 %, 10 %, 50 %, 100 %: completed, every device at the new version`, async () => {
    const r = await piota(startArgs('big', "tags.ring = 'big'", '1%,10%,50%,100%')).done;
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/rollout big created: 200 device\(s\) match tags.ring = 'big'; waves reach 2, 20, 100, 200/);
    const s = await status('big');
    expect(s).toMatchObject({ name: 'big', state: 'completed', failureRate: 0 });
    expect(s.waves.map((w) => [w.wave, w.devices, w.succeeded, w.failed])).toEqual([[1, 2, 2, 0], [2, 18, 18, 0], [3, 80, 80, 0], [4, 100, 100, 0]]);
    for (const id of ['pi-1', 'pi-77', 'pi-200']) expect((await reported(id)).iothubDM.firmwareVersion).toBe('2.0.0');
    // 3.5 minutes on a 2-core machine at load 20; the bound leaves room for a slower CI.
    expect(s.totals).toMatchObject({ devices: 200, succeeded: 200, failed: 0, offline: 0, running: 0 });
  }, 480_000);

  it.concurrent('with 20 % of devices failing their trial, halts in the first wave whose failure rate passes 5 % (min 2 failed); the next wave never starts', async () => {
    const f = await smallFleet('halt', 60, { failTrialRatio: 0.2 });
    const failing = new Set(f.devices.filter((d) => d.role === 'failTrial').map((d) => d.id));
    expect(failing.size).toBe(12);
    const r = await piota(startArgs('halt', "tags.ring = 'halt'", '5%,25%,50%,100%')).done;
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(1);
    const s = await status('halt');
    expect(s.state).toBe('halted');
    const started = s.waves.filter((w) => w.stage !== 'pending');
    const haltWave = started[started.length - 1].wave;
    expect(s.reason).toMatch(new RegExp(`^in wave ${haltWave}: \\d+ failed of \\d+ finished .* reached --halt-failure-rate 5% with at least 2 failed`));
    // The first wave whose rate passed: before it, fewer than 2 devices had failed.
    const failedBefore = s.waves.filter((w) => w.wave < haltWave).reduce((n, w) => n + w.failed, 0);
    expect(failedBefore).toBeLessThan(2);
    expect(s.failureRate).toBeGreaterThanOrEqual(0.05);
    // The next wave never started: no tag, no job, no update on any device beyond the halted wave.
    for (const w of s.waves.filter((x) => x.wave > haltWave)) expect(w).toMatchObject({ stage: 'pending', devices: 0, jobId: null });
    const reached = s.totals.devices;
    expect(reached).toBeLessThanOrEqual(s.waves[haltWave - 1].cumulativeSize);
    let untouched = 0;
    for (const d of f.devices) if (!(await tagsOf(d.id)).piota?.rollout) untouched++;
    expect(untouched).toBe(60 - reached);
    // The failed devices are the seeded ones, with the agent's own error code.
    expect(s.failedDevices.length).toBeGreaterThanOrEqual(2);
    for (const x of s.failedDevices) {
      if (x.code === 'cancelled') continue;
      expect(failing.has(x.deviceId), x.deviceId).toBe(true);
      expect(x.code).toMatch(/trialFailed|trialUnhealthy|bootLoop/);
    }
    expect(s.decisions.some((d) => d.what === 'clean-up after halted')).toBe(true);
  }, 240_000);

  it.concurrent('reports devices offline at their wave as offline (not failed); they apply the release from the desired properties when they come back', async () => {
    const f = await smallFleet('away', 16, { offlineRatio: 0.25 });
    const away = f.devices.filter((d) => d.role === 'offline').map((d) => d.id);
    expect(away).toHaveLength(4);
    const r = await piota(startArgs('away', "tags.ring = 'away'", 'all')).done;
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    let s = await status('away');
    expect(s.totals).toMatchObject({ devices: 16, succeeded: 12, failed: 0, offline: 4 });
    expect(s.offlineDevices.map((d) => d.deviceId).sort()).toEqual([...away].sort());
    const text = (await piota(['rollout', 'status', 'away', '--hub-dir', world.hubDir, '--tier', 'S3']).done).stdout;
    expect(text).toMatch(/offline, not counted as failed \(4\)/);
    await f.bringOnline(away);
    await waitFor('the offline devices to apply the desired release', async () => (await status('away')).totals.succeeded === 16, 90_000);
    s = await status('away');
    expect(s.totals).toMatchObject({ succeeded: 16, offline: 0, failed: 0 });
    for (const id of away) {
      const rep = await reported(id);
      expect(rep.piota.firmware).toMatchObject({ desiredId: 'piota-rollout:away', decision: 'accepted' });
      expect(rep.iothubDM.firmwareVersion).toBe('2.0.0');
    }
  }, 240_000);

  it.concurrent('a controller killed mid-rollout is taken over by `piota rollout run` from another process and directory, which finishes the rollout', async () => {
    await smallFleet('kill', 30);
    const first = piota(startArgs('kill', "tags.ring = 'kill'", '10%,50%,100%', ['--lease', '5s']));
    await waitFor('the first wave to start', async () => /wave 1 job piota-kill-w1 scheduled/.test(first.stdout()), 60_000);
    first.child.kill('SIGKILL');
    await first.done;
    const mid = await status('kill');
    expect(mid.state).toBe('running');
    expect(mid.controller?.owner).toMatch(/:\d+:/);
    // Another process in another directory, knowing only the hub.
    const elsewhere = await mkdtemp(join(tmpdir(), 'piota-other-checkout-'));
    const second = await piota(['rollout', 'run', 'kill', '--hub-dir', world.hubDir, '--tier', 'S3', '--poll', '500ms'], { cwd: elsewhere }).done;
    await rm(elsewhere, { recursive: true, force: true });
    expect(second.code, `${second.stdout}\n${second.stderr}`).toBe(0);
    const s = await status('kill');
    expect(s.state).toBe('completed');
    expect(s.totals).toMatchObject({ devices: 30, succeeded: 30, failed: 0 });
    expect(s.waves.map((w) => w.devices)).toEqual([3, 12, 15]);
    const takeover = s.decisions.find((d) => /^controller .* drives the rollout$/.test(d.what) && /expired/.test(d.why));
    expect(takeover, JSON.stringify(s.decisions)).toBeDefined();
  }, 240_000);

  it('answers a person\'s mistakes with the documented exit codes', async () => {
    const unknown = await piota(['rollout', 'status', 'nope', '--hub-dir', world.hubDir]).done;
    expect(unknown.code).toBe(5);
    expect(unknown.stderr).toMatch(/no rollout named 'nope' in this hub/);
    const again = await piota(startArgs('big', "tags.ring = 'big'", 'all')).done;
    expect(again.code).toBe(5);
    expect(again.stderr).toMatch(/a rollout named 'big' exists already/);
    const cont = await piota(['rollout', 'continue', 'big', '--hub-dir', world.hubDir]).done;
    expect(cont.code).toBe(6);
    expect(cont.stderr).toMatch(/rollout 'big' is completed \(all 4 waves done\): it cannot continue/);
    const usage = await piota(['rollout', 'start', 'x', '--uri', release.url, '--version', '2', '--target', 'tags.a = 1', '--waves', '50%,10%', '--halt-failure-rate', '5%', '--wave-timeout', '1m', '--hub-dir', world.hubDir]).done;
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/--waves '50%,10%': waves are cumulative/);
    const badTarget = await piota(startArgs('bad-target', 'tags.ring ==== 1', 'all')).done;
    expect(badTarget.code).toBe(2);
    expect(badTarget.stderr).toMatch(/query/);
  }, 60_000);

  it('with --tier S1 against a hub throttling as S1 does, paces itself: no request refused, the rollout completes', async () => {
    // The same hub, restarted with IoT Hub's S1 throttles; the fleets reconnect by themselves.
    await world.stopHub();
    world.hub = await startHub({ dir: world.hubDir, mqttPort: world.hub.info.mqttPort, httpsPort: world.hub.info.httpsPort, tier: 'S1' });
    await smallFleet('slow', 4);
    const r = await piota([...startArgs('slow', "tags.ring = 'slow'", 'all').map((a) => (a === 'S3' ? 'S1' : a))]).done;
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    const stats = world.hub.stats() as { tier: string; categories: Record<string, { throttled: number; admitted: number }> };
    expect(stats.tier).toBe('S1');
    expect(stats.categories.queries.admitted).toBeGreaterThan(3);
    for (const [category, c] of Object.entries(stats.categories)) expect(c.throttled, category).toBe(0);
    const s = await piota(['rollout', 'status', 'slow', '--json', '--hub-dir', world.hubDir, '--tier', 'S1']).done;
    expect(JSON.parse(s.stdout)).toMatchObject({ state: 'completed', totals: { devices: 4, succeeded: 4, failed: 0 } });
  }, 300_000);
});
