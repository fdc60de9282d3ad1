import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { buildSlotIndex, loadSlotIndex, saveSlotIndex } from '../../src/adaptive/slot-index.js';
import { slotIndexPath } from '../../src/adaptive/slot-index-builds.js';
import { World, waitFor } from './world.js';

// The slot index on a simulated Pi (`piota simulate`: the real daemon, the hub emulator, the SDK):
// built in idle time at start-up for the committed slot, and again for the new slot once an update
// is committed, so the next update can be adaptive from the start (docs/adaptive-updates.md).
let world: World;
beforeAll(async () => {
  world = await World.create();
}, 60_000);
afterAll(() => world?.close());

describe('the slot index in idle time on a simulated Pi', () => {
  it('appears for slot A after start-up, and for slot B after an update to B commits', async () => {
    const pi = await world.pi('idx-commit');
    const stateDir = join(pi.dir, 'data');
    const sim = await pi.sim();
    for (const payload of ['rootfs', 'boot'] as const) {
      await waitFor(`the index of A ${payload}`, async () => (await stat(slotIndexPath(stateDir, 'A', payload)).catch(() => undefined))?.isFile(), 30_000);
    }
    // An index of what B holds before the update (as if B had run earlier): it must not survive it.
    const before = await buildSlotIndex(sim.slots.B.rootfs, (await stat(sim.slots.B.rootfs)).size);
    await saveSlotIndex(slotIndexPath(stateDir, 'B', 'rootfs'), before);
    const { url } = await world.bundle('idx-commit', { version: '1.0.1' });
    const answer = await world.invoke('idx-commit', 'firmwareUpdate', { fwPackageUri: url });
    expect(answer.status).toBe(200);
    const reported = await world.waitForUpdate('idx-commit', answer.payload.updateId as string, (fu) => fu.status === 'applyComplete' || fu.status === 'applyFailed', 60_000);
    expect(reported.iothubDM.firmwareUpdate.status).toBe('applyComplete');
    const status = await pi.status();
    expect(status.committedSlot).toBe('B');
    for (const payload of ['rootfs', 'boot'] as const) {
      const index = await waitFor(`the index of B ${payload}`, () => loadSlotIndex(slotIndexPath(stateDir, 'B', payload)).then((i) => i ?? undefined), 30_000);
      // It describes what B holds now (the new release), not what it held before.
      const now = await buildSlotIndex(sim.slots.B[payload], index.size);
      expect(Buffer.from(index.keys).equals(Buffer.from(now.keys))).toBe(true);
      if (payload === 'rootfs') expect(Buffer.from(index.keys).equals(Buffer.from(before.keys))).toBe(false);
    }
    // A's index stays: A is the next update's target, whose blocks may be reused.
    expect(await loadSlotIndex(slotIndexPath(stateDir, 'A', 'rootfs'))).not.toBeNull();
  }, 150_000);
});
