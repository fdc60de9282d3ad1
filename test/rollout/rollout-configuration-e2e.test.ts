import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { serviceRegistry } from '../../src/service/hub-connection.js';
import { startFleet, type Fleet } from '../../src/simulator/fleet/fleet.js';
import type { RolloutStatus } from '../../src/rollout/status.js';
import { World, waitFor } from '../e2e/world.js';
import { piota } from './cli-run.js';

/**
 * `piota rollout start --via configuration` end to end, as a user runs it (node bin/piota.js)
 * against the hub emulator and a small in-process fleet (the real agent as instances): each wave an
 * automatic device configuration, devices acting on the desired release, the offline ones when they
 * come back, and the hub's metrics counting them.
 */
const FLEET = 30;

describe('piota rollout --via configuration against the emulator and an in-process fleet', () => {
  let world: World;
  let fleet: Fleet;
  let release: { url: string; version: string };

  beforeAll(async () => {
    world = await World.create();
    release = await world.bundle('fw-2.0.0.piota', { version: '2.0.0', rootfsBytes: 16 * 1024, bootBytes: 4 * 1024, chunkSize: 8 * 1024 });
    fleet = await startFleet({
      dir: join(world.dir, 'fleet'), hubDir: world.hubDir, count: FLEET, prefix: 'cf', pubkey: world.key.pubFile, downloadCa: world.files.caFile,
      tags: { ring: 'conf' }, seed: 5, offlineRatio: 0.1, logLevel: 'warn', watchdogMs: 300, daemonConfig: { trialTimeoutSeconds: 30, progressIntervalSeconds: 1 },
    });
    const online = fleet.devices.filter((d) => d.role !== 'offline').map((d) => d.id);
    await waitFor('the fleet to connect', async () => online.every((id) => world.hub.connectedDevices().includes(id)), 60_000);
  }, 120_000);

  afterAll(async () => {
    await fleet?.stop();
    await world?.close();
  });

  it(`rolls ${FLEET} devices out in 2 waves of configurations: offline ones counted apart, then every device at the new version, the metrics counting them`, async () => {
    const hubArgs = ['--hub-dir', world.hubDir, '--tier', 'S3'];
    const status = async (): Promise<RolloutStatus> => {
      const r = await piota(['rollout', 'status', 'conf', '--json', ...hubArgs]).done;
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as RolloutStatus;
    };
    const away = fleet.devices.filter((d) => d.role === 'offline').map((d) => d.id);
    expect(away).toHaveLength(3);
    const r = await piota([
      'rollout', 'start', 'conf', '--uri', release.url, '--version', release.version, '--target', "tags.ring = 'conf'", '--waves', '50%,all',
      '--halt-failure-rate', '5%', '--halt-min-failed', '2', '--wave-timeout', '3m', '--apply-now', '--via', 'configuration', ...hubArgs, '--poll', '500ms',
    ]).done;
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/wave 1 configuration piota-conf-w1 created/);
    let s = await status();
    expect(s).toMatchObject({ name: 'conf', state: 'completed', via: 'configuration', failureRate: 0 });
    expect(s.totals).toMatchObject({ devices: FLEET, succeeded: FLEET - 3, failed: 0, offline: 3 });
    expect(s.offlineDevices.map((d) => d.deviceId).sort()).toEqual([...away].sort());
    expect(s.waves.map((w) => [w.wave, w.devices, w.configurationId, w.jobId])).toEqual([[1, 15, 'piota-conf-w1', null], [2, 15, 'piota-conf-w2', null]]);

    await fleet.bringOnline(away);
    await waitFor('the offline devices to apply the desired release', async () => (await status()).totals.succeeded === FLEET, 60_000);
    s = await status();
    expect(s.totals).toMatchObject({ devices: FLEET, succeeded: FLEET, offline: 0, failed: 0 });

    const registry = serviceRegistry(world.hub.info);
    for (const d of fleet.devices) {
      const twin = (await registry.getTwin(d.id)).responseBody as unknown as { properties: { reported: Record<string, any> } };
      expect(twin.properties.reported.iothubDM.firmwareVersion, d.id).toBe('2.0.0');
      expect(twin.properties.reported.piota.firmware).toMatchObject({ desiredId: 'piota-rollout:conf', decision: 'accepted' });
    }
    const metrics = await Promise.all([1, 2].map(async (w) => (await registry.getConfiguration(`piota-conf-w${w}`)).responseBody as unknown as { metrics: { results: Record<string, number> }; systemMetrics: { results: Record<string, number> } }));
    expect(metrics.map((m) => m.systemMetrics.results.targetedCount)).toEqual([15, 15]);
    expect(metrics.map((m) => m.systemMetrics.results.appliedCount)).toEqual([15, 15]);
    expect(metrics.reduce((n, m) => n + m.metrics.results.applyComplete, 0)).toBe(FLEET);
    expect(metrics.reduce((n, m) => n + m.metrics.results.applyFailed, 0)).toBe(0);
  }, 90_000);
});
