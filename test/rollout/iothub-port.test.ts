import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { iothubRolloutHub } from '../../src/rollout/iothub-port.js';
import type { RolloutHub } from '../../src/rollout/hub-port.js';
import { createPacer } from '../../src/rollout/pacer.js';
import { World } from '../e2e/world.js';

/** The rollout's hub port over the real azure-iothub SDK, against the emulator over TLS. */
describe('iothubRolloutHub against the emulator', () => {
  let world: World;
  let hub: RolloutHub;
  beforeAll(async () => {
    world = await World.create();
    hub = iothubRolloutHub(world.hub.info, createPacer({ tier: 'S3', share: 1 }));
  }, 60_000);
  afterAll(async () => world?.close());

  it('schedules, reads and cancels a job through the JobClient pointed at the emulator (serviceJobClient)', async () => {
    await hub.scheduleMethodJob('port-j1', "tags.none = 'x'", { methodName: 'firmwareUpdate', payload: {}, responseTimeoutInSeconds: 10, connectTimeoutInSeconds: 0 }, 60);
    expect((await hub.getJob('port-j1'))?.jobId).toBe('port-j1');
    expect(await hub.getJob('port-none')).toBeNull();
  });

  it('creates a configuration, reads its metrics, refuses a second create as exists, deletes it', async () => {
    await hub.createDevice('port-d1');
    await hub.updateTwin('port-d1', { tags: { piota: { rollout: { name: 'p', wave: 1 } } } });
    const spec = { id: 'piota-p-w1', targetCondition: "tags.piota.rollout.name = 'p' AND tags.piota.rollout.wave = 1", priority: 10, labels: { piotaRollout: 'p' }, desiredPatch: { piota: { firmware: { id: 'piota-rollout:p' } } }, metrics: { tagged: "SELECT deviceId FROM devices WHERE tags.piota.rollout.name = 'p'" } };
    await hub.addConfiguration(spec);
    const c = await hub.getConfiguration('piota-p-w1');
    expect(c).toMatchObject({ id: 'piota-p-w1', targetCondition: spec.targetCondition, metrics: { tagged: 1 }, systemMetrics: { targetedCount: 1 } });
    expect((await hub.getTwin('port-d1')).desired).toMatchObject({ piota: { firmware: { id: 'piota-rollout:p' } } });
    await expect(hub.addConfiguration(spec)).rejects.toMatchObject({ kind: 'exists' });
    await hub.removeConfiguration('piota-p-w1');
    expect(await hub.getConfiguration('piota-p-w1')).toBeNull();
    await expect(hub.removeConfiguration('piota-p-w1')).rejects.toMatchObject({ kind: 'notFound' });
  });
});
