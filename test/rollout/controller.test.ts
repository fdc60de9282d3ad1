import { describe, expect, it } from 'vitest';
import { driveRollout, type ControllerOptions } from '../../src/rollout/controller.js';
import { createRollout } from '../../src/rollout/create.js';
import { parseWaves, type RolloutDefinition } from '../../src/rollout/definition.js';
import { EvidenceReader } from '../../src/rollout/evidence.js';
import { RecordStore } from '../../src/rollout/record-store.js';
import { applyEvent } from '../../src/rollout/state-machine.js';
import { rolloutStatus } from '../../src/rollout/status.js';
import { seeded } from '../helpers/seeded-random.js';
import { FakeHub, type Behaviour } from './fake-hub.js';

function definition(name: string, waves = '1%,10%,50%,100%', halt = { failureRate: 0.05, minFailed: 2 }): RolloutDefinition {
  return { name, release: { fwPackageUri: 'https://fw.example/fw-2.piota', version: '2.0.0', applyNow: true }, target: "tags.fleet = 'lab'", waves: parseWaves(waves), halt, waveTimeoutMs: 600_000, connectTimeoutS: 0, via: 'job' };
}

function fleet(n: number, behaviourOf: (i: number) => Behaviour = () => 'ok'): FakeHub {
  const hub = new FakeHub();
  for (let i = 1; i <= n; i++) hub.addDevice(`pi-${i}`, { fleet: 'lab' }, behaviourOf(i));
  hub.addDevice('other-1', { fleet: 'prod' });
  return hub;
}

/** A controller on a fake clock: sleeping moves the clock, nothing waits in real time. */
function controller(hub: FakeHub, name: string, extra: Partial<ControllerOptions> = {}): ControllerOptions {
  let t = Date.parse('2026-01-01T00:00:00Z');
  // Each sleep also yields to the event loop, so a runaway loop still lets the test's timeout fire.
  const sleep = async (ms: number) => {
    t += ms;
    await new Promise((r) => setImmediate(r));
  };
  return { hub, store: new RecordStore(hub), name, owner: 'test:1', leaseMs: 30_000, pollMs: 1000, stopWhenPaused: true, now: () => t, sleep, ...extra };
}

async function statusOf(hub: FakeHub, name: string) {
  const { record } = await new RecordStore(hub).read(name);
  return rolloutStatus(record, (await new EvidenceReader(hub).read(record)).outcomes, Date.now());
}

describe('the rollout controller (fake hub port)', () => {
  it('rolls 200 devices out in waves 1/10/50/100 % to completion, each device in one wave, others untouched', async () => {
    const hub = fleet(200);
    await createRollout(hub, new RecordStore(hub), definition('r1'), new Date());
    const end = await driveRollout(controller(hub, 'r1'));
    expect(end.end).toBe('final');
    expect(end.record.state).toBe('completed');
    expect(end.record.waves.map((w) => [w.wave, w.devices, w.stage])).toEqual([[1, 2, 'done'], [2, 18, 'done'], [3, 80, 'done'], [4, 100, 'done']]);
    const status = await statusOf(hub, 'r1');
    expect(status.totals).toMatchObject({ devices: 200, succeeded: 200, failed: 0 });
    expect(hub.devices.get('other-1')!.twin.tags).toEqual({ fleet: 'prod' });
    // One job per wave, each over its own wave's devices.
    expect([...hub.jobs.keys()]).toEqual(['piota-r1-w1', 'piota-r1-w2', 'piota-r1-w3', 'piota-r1-w4']);
    expect(hub.jobs.get('piota-r1-w2')!.results).toHaveLength(18);
  });

  it('halts in the first wave whose failure rate passes the threshold; the next wave never starts; waiting devices get cancelled', async () => {
    // Every 5th device fails its trial: 20 %.
    const hub = fleet(200, (i) => (i % 5 === 0 ? 'failTrial' : 'ok'));
    await createRollout(hub, new RecordStore(hub), definition('r2'), new Date());
    const end = await driveRollout(controller(hub, 'r2'));
    expect(end.record.state).toBe('halted');
    const halted = end.record.waves.filter((w) => w.stage === 'started' || w.stage === 'done').map((w) => w.wave);
    const status = await statusOf(hub, 'r2');
    // It halted as soon as 2 failures made the rate pass 5 %: no device beyond the waves started.
    expect(end.record.waves.find((w) => w.wave === Math.max(...halted) + 1)?.stage ?? 'none').toMatch(/pending|none/);
    expect(status.totals.devices).toBeLessThanOrEqual(end.record.waves[Math.max(...halted) - 1].cumulativeSize);
    expect(status.totals.failed).toBeGreaterThanOrEqual(2);
    expect(end.record.reason).toMatch(/reached --halt-failure-rate 5%/);
    expect(status.failedDevices.every((f) => f.code === 'trialFailed' || f.code === 'cancelled')).toBe(true);
    expect(end.record.cleanedUp).toBe(true);
    expect(end.record.decisions.some((d) => d.what === 'clean-up after halted')).toBe(true);
  });

  it('counts offline devices apart, gives them the release as a desired property, and counts them when they come back', async () => {
    const hub = fleet(20, (i) => (i % 4 === 0 ? 'offline' : 'ok'));
    await createRollout(hub, new RecordStore(hub), definition('r3', '50%,all', { failureRate: 0.05, minFailed: 1 }), new Date());
    const end = await driveRollout(controller(hub, 'r3'));
    expect(end.record.state).toBe('completed');
    let status = await statusOf(hub, 'r3');
    expect(status.totals).toMatchObject({ succeeded: 15, failed: 0, offline: 5 });
    expect(status.offlineDevices.map((d) => d.deviceId).sort()).toEqual(['pi-12', 'pi-16', 'pi-20', 'pi-4', 'pi-8']);
    expect(hub.devices.get('pi-4')!.twin.desired).toMatchObject({ piota: { firmware: { id: 'piota-rollout:r3', version: '2.0.0', fwPackageUri: 'https://fw.example/fw-2.piota' } } });
    hub.reconnect('pi-4');
    status = await statusOf(hub, 'r3');
    status = await statusOf(hub, 'r3');
    status = await statusOf(hub, 'r3');
    expect(status.totals).toMatchObject({ succeeded: 16, offline: 4 });
  });

  it('refuses a device that answers the method with an error as failed, with its answer', async () => {
    const hub = fleet(10, (i) => (i <= 10 ? 'busy' : 'ok'));
    await createRollout(hub, new RecordStore(hub), definition('r4', 'all', { failureRate: 0.5, minFailed: 3 }), new Date());
    const end = await driveRollout(controller(hub, 'r4'));
    expect(end.record.state).toBe('halted');
    const status = await statusOf(hub, 'r4');
    expect(status.failedDevices[0]).toMatchObject({ stage: 'refused', code: 'method409', message: 'another update is in progress' });
  });

  it('stops at a pause written by another workstation, and a second controller waits for a live lease, then takes over', async () => {
    const hub = fleet(40);
    const store = new RecordStore(hub);
    await createRollout(hub, store, definition('r5', '5,20,all'), new Date());
    let looks = 0;
    const first = await driveRollout(
      controller(hub, 'r5', {
        onStatus: () => {
          if (++looks === 3) void store.update('r5', (r) => applyEvent(r, { type: 'pause', by: 'ops@laptop' }, new Date()));
        },
      }),
    );
    expect(first.end).toBe('paused');
    expect(first.record.reason).toBe('paused by ops@laptop');
    const started = first.record.waves.filter((w) => w.stage !== 'pending').length;
    expect(started).toBeLessThan(3);
    await store.update('r5', (r) => applyEvent(r, { type: 'continue', by: 'ops@laptop' }, new Date()));
    // A controller that died holding the lease: the next one waits until it expires, then drives.
    let t = Date.now();
    await store.update('r5', (r) => ({ ...r, controller: { owner: 'dead:9', expiresAt: t + 45_000 } }));
    const notes: string[] = [];
    const second = await driveRollout(controller(hub, 'r5', { owner: 'test:2', now: () => t, sleep: async (ms) => void (t += ms), onNote: (n) => notes.push(n) }));
    expect(notes[0]).toMatch(/driven by dead:9; waiting to take over/);
    expect(second.record.state).toBe('completed');
    expect(second.record.decisions.some((d) => d.what === 'controller test:2 drives the rollout' && /lease of dead:9 expired/.test(d.why))).toBe(true);
    expect((await statusOf(hub, 'r5')).totals.succeeded).toBe(40);
  });

  it('goes on through the hub answering 429 (throttled calls are retried by the pacer, never a device failure)', async () => {
    const { createPacer } = await import('../../src/rollout/pacer.js');
    const hub = fleet(30);
    hub.throttleEvery = 7;
    // The pacer wraps the port the way iothub-port.ts does: every call through run().
    const pacer = createPacer({ tier: 'S3', share: 1, sleep: async () => {}, random: () => 0.5 });
    const paced = new Proxy(hub, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver);
        return typeof v === 'function' && prop !== 'addDevice' ? (...args: unknown[]) => pacer.run('query', () => v.apply(target, args)) : v;
      },
    });
    const store = new RecordStore(paced);
    await createRollout(paced, store, definition('r6', '10%,all'), new Date());
    const end = await driveRollout(controller(paced, 'r6', { store }));
    expect(end.record.state).toBe('completed');
    expect(pacer.stats.query.throttled).toBeGreaterThan(3);
    hub.throttleEvery = 0;
    expect((await statusOf(hub, 'r6')).totals).toMatchObject({ succeeded: 30, failed: 0 });
  });

  it('keeps track through connection resets: each look starts again from the hub, nothing is done twice', async () => {
    const hub = fleet(30);
    const store = new RecordStore(hub);
    await createRollout(hub, store, definition('r7', '10%,50%,all'), new Date());
    hub.resets = { rate: 0.15, random: seeded(15) };
    const notes: string[] = [];
    const end = await driveRollout(controller(hub, 'r7', { onNote: (n) => notes.push(n) }));
    hub.resets = null;
    expect(end.record.state).toBe('completed');
    expect(notes.some((n) => /fake ECONNRESET/.test(n))).toBe(true);
    expect([...hub.jobs.keys()]).toEqual(['piota-r7-w1', 'piota-r7-w2', 'piota-r7-w3']);
    const s = await statusOf(hub, 'r7');
    expect(s.totals).toMatchObject({ devices: 30, succeeded: 30 });
    expect(s.waves.map((w) => w.devices)).toEqual([3, 12, 15]);
  });
});

describe('the rollout controller --via configuration (fake hub port)', () => {
  const viaConfiguration = (name: string, waves: string, halt?: RolloutDefinition['halt']) => ({ ...definition(name, waves, halt), via: 'configuration' as const });

  it('gives each wave one configuration over its tagged devices, no job; completes with every device done and the metrics counting them', async () => {
    const hub = fleet(40);
    await createRollout(hub, new RecordStore(hub), viaConfiguration('c1', '10%,all'), new Date());
    const end = await driveRollout(controller(hub, 'c1'));
    expect(end.record.state).toBe('completed');
    expect(hub.jobs.size).toBe(0);
    expect(end.record.waves.map((w) => [w.wave, w.devices, w.configurationId, w.jobId])).toEqual([[1, 4, 'piota-c1-w1', null], [2, 36, 'piota-c1-w2', null]]);
    const w2 = hub.configurations.get('piota-c1-w2')!.spec;
    expect(w2.targetCondition).toBe("tags.piota.rollout.name = 'c1' AND tags.piota.rollout.wave = 2");
    expect(w2.desiredPatch).toEqual({ piota: { firmware: { id: 'piota-rollout:c1', fwPackageUri: 'https://fw.example/fw-2.piota', version: '2.0.0', applyWindow: 'now' } } });
    expect(await hub.getConfiguration('piota-c1-w2')).toMatchObject({ metrics: { applyComplete: 36, applyFailed: 0 }, systemMetrics: { targetedCount: 36, appliedCount: 36 } });
    expect((await statusOf(hub, 'c1')).totals).toMatchObject({ devices: 40, succeeded: 40, failed: 0, offline: 0 });
    // Completed: the configurations stay, for devices that come later to the same wave's tag.
    expect(hub.removedConfigurations).toEqual([]);
    expect(hub.devices.get('other-1')!.twin.desired).toEqual({});
  });

  it('halts on failures and deletes the wave configurations, removing the release from devices that did not act on it', async () => {
    const hub = fleet(40, (i) => (i % 5 === 0 ? 'failTrial' : i === 1 ? 'offline' : 'ok'));
    await createRollout(hub, new RecordStore(hub), viaConfiguration('c2', '25%,50%,all'), new Date());
    const end = await driveRollout(controller(hub, 'c2'));
    expect(end.record.state).toBe('halted');
    const created = end.record.waves.filter((w) => w.configurationId).map((w) => w.configurationId);
    expect(created.length).toBeGreaterThan(0);
    expect(end.record.waves.some((w) => w.stage === 'pending')).toBe(true);
    expect(hub.removedConfigurations.sort()).toEqual([...created].sort());
    expect(hub.configurations.size).toBe(0);
    // The offline device (tagged in wave 1 by the stable order, or not at all) has no release waiting.
    for (const d of hub.devices.values()) {
      const acted = (d.twin.reported.piota as Record<string, unknown> | undefined) !== undefined;
      if (!acted) expect(d.twin.desired).not.toHaveProperty('piota.firmware');
    }
    expect(end.record.decisions.find((d) => d.what === 'clean-up after halted')!.why).toMatch(new RegExp(`${created.length} configuration\\(s\\) deleted`));
  });

  it('counts a disconnected device offline (never failed) until it connects and acts on the desired release', async () => {
    const hub = fleet(20, (i) => (i % 4 === 0 ? 'offline' : 'ok'));
    await createRollout(hub, new RecordStore(hub), viaConfiguration('c3', '50%,all', { failureRate: 0.05, minFailed: 1 }), new Date());
    const end = await driveRollout(controller(hub, 'c3'));
    expect(end.record.state).toBe('completed');
    let status = await statusOf(hub, 'c3');
    expect(status.totals).toMatchObject({ succeeded: 15, failed: 0, offline: 5 });
    // The hub wrote the release on the offline device too: nothing more for the controller to do.
    expect(hub.devices.get('pi-4')!.twin.desired).toMatchObject({ piota: { firmware: { id: 'piota-rollout:c3' } } });
    hub.reconnect('pi-4');
    for (let i = 0; i < 4; i++) status = await statusOf(hub, 'c3');
    expect(status.totals).toMatchObject({ succeeded: 16, offline: 4 });
    expect(status.waves.reduce((n, w) => n + w.offline, 0)).toBe(4);
  });

  it('counts a connected device that never acts offline once the wave timeout passes, and the wave ends', async () => {
    const hub = fleet(4);
    // pi-2 stays connected but silent: the configuration reaches its twin, the device never answers.
    const silent = hub.devices.get('pi-2')!;
    silent.behaviour = 'offline';
    await createRollout(hub, new RecordStore(hub), viaConfiguration('c4', 'all'), new Date());
    const end = await driveRollout(controller(hub, 'c4'));
    expect(end.record.state).toBe('completed');
    expect(end.record.waves[0].endReason).toMatch(/every device settled: 3 succeeded, 0 failed, 1 offline/);
    expect(Date.parse(end.record.waves[0].endedAt!) - Date.parse(end.record.waves[0].startedAt!)).toBeGreaterThanOrEqual(600_000);
  });
});
