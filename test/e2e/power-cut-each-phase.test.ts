import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFile } from 'node:fs/promises';
import { World, waitFor, type SimulatedPi } from './world.js';

// A power cut (SIGKILL of the daemon; the simulator boots the board again by the firmware's rules)
// just after the daemon persisted each phase. Whatever the timing, the update must end consistently:
// applyComplete only with the new slot booted, committed and holding the image; otherwise applyFailed
// or downloadFailed on the old slot, with the old version. Never a success it did not reach.
let world: World;
beforeAll(async () => {
  world = await World.create();
}, 60_000);
afterAll(() => world?.close());

/** Cuts the power once the daemon logged entering `phase`; returns the phase on disk at the cut. */
async function cutWhenLogged(pi: SimulatedPi, phase: string, updateId: string): Promise<string | undefined> {
  const needle = `"updateId":"${updateId}","from"`;
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const log = await pi.daemonLog();
    if (log.split('\n').some((l) => l.includes(needle) && l.includes(`"to":"${phase}"`))) {
      const before = await pi.sim();
      const pid = before.daemonPid!;
      process.kill(pid, 'SIGKILL');
      await waitFor('the daemon to die', async () => !alive(pid), 5000);
      const onDisk = (await pi.state()).update.phase as string;
      await waitFor('the board to boot again', async () => {
        const s = await pi.sim();
        return s.bootCount > before.bootCount && s.daemonPid !== null;
      }, 20_000);
      return onDisk;
    }
    const state = (await pi.state().catch(() => undefined))?.update;
    if (state && ['applyComplete', 'applyFailed', 'downloadFailed'].includes(state.phase)) return undefined;
    await new Promise((r) => setTimeout(r, 5));
  }
  return undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('a power cut just after each phase is persisted', () => {
  it.each(['downloading', 'downloadComplete', 'verifying', 'rebooting', 'trial', 'committing'])('after %s: the outcome is consistent', async (phase) => {
    const id = `cut-${phase}`;
    const pi = await world.pi(id);
    const { url, rootfs } = await world.bundle(`fw-${phase}`, { version: '2.0.0', rootfsBytes: 512 * 1024 });
    const answer = await world.invoke(id, 'firmwareUpdate', { fwPackageUri: url });
    expect(answer.status).toBe(200);
    const updateId = answer.payload.updateId as string;
    const cutAt = await cutWhenLogged(pi, phase, updateId);

    const done = await world.waitForUpdate(id, updateId, (fu) => ['applyComplete', 'applyFailed', 'downloadFailed'].includes(fu.status));
    const status = done.iothubDM.firmwareUpdate.status;
    // What the twin says is what the device persisted.
    await waitFor('the state file to settle', async () => (await pi.state()).update?.phase === status, 10_000);
    const sim = await pi.sim();
    const autoboot = await pi.autoboot();
    if (status === 'applyComplete') {
      expect(sim.bootedSlot).toBe('B');
      expect(autoboot).toMatch(/\[all\][^[]*boot_partition=3/);
      expect(done.iothubDM.firmwareVersion).toBe('2.0.0');
      const written = await readFile(sim.slots.B.rootfs);
      expect(written.subarray(0, rootfs.length).equals(rootfs)).toBe(true);
    } else {
      expect(sim.bootedSlot).toBe('A');
      expect(autoboot).toMatch(/\[all\][^[]*boot_partition=2/);
      expect(done.iothubDM.firmwareVersion).toBe('1.0.0');
      expect(done.iothubDM.firmwareUpdate.error.code).toMatch(/^(trialFailed|trialUnhealthy)$/);
    }
    // Cut before the trial reboot was asked for, the update is not lost: it resumes and completes.
    if (cutAt && ['downloading', 'downloadComplete', 'verifying'].includes(cutAt)) expect(status).toBe('applyComplete');
    console.log(`power cut after '${phase}': ${cutAt ? `cut with '${cutAt}' on disk` : 'too late to cut'} → ${status}`);
  });
});
