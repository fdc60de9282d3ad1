import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFile } from 'node:fs/promises';
import { FIRST_REQUEST_BYTES } from '../../src/agent/bundle-stream.js';
import { World, waitFor } from './world.js';

// Power cuts (SIGKILL of the daemon: the simulator boots the board again) and hub outages at the
// steps of an update: the daemon resumes or fails cleanly, and never reports a success it did not reach.
let world: World;
beforeAll(async () => {
  world = await World.create();
}, 60_000);
afterAll(() => world?.close());

describe('interruptions', () => {
  it('resumes a download cut by a power cut at the last chunk on the medium', async () => {
    const pi = await world.pi('cut-download');
    world.files.faults.bytesPerSecond = 256 * 1024;
    try {
      const { url, rootfs } = await world.bundle('fw-resume', { version: '1.1.0', rootfsBytes: 1024 * 1024, chunkSize: 64 * 1024 });
      const answer = await world.invoke('cut-download', 'firmwareUpdate', { fwPackageUri: url });
      const updateId = answer.payload.updateId as string;
      // Wait until some chunks are persisted as on the medium, then cut the power.
      const atCut = await waitFor('chunks on the medium', async () => {
        const u = (await pi.state()).update;
        return u?.phase === 'downloading' && u.nextChunk >= 2 ? u.nextChunk : undefined;
      }, 20_000);
      await pi.powerCut();
      world.files.faults.bytesPerSecond = undefined;
      const done = await world.waitForUpdate('cut-download', updateId, (fu) => ['applyComplete', 'applyFailed', 'downloadFailed'].includes(fu.status));
      expect(done.iothubDM.firmwareUpdate.status).toBe('applyComplete');
      // It resumed with a Range request at or after the chunk it had persisted, not from zero. (Every
      // attempt asks for the header first, bytes 0 to FIRST_REQUEST_BYTES - 1, and the first then for
      // the rest from FIRST_REQUEST_BYTES on: docs/download.md.)
      const starts = world.files.requests.filter((r) => r.path === 'fw-resume' && r.range).map((r) => Number(/bytes=(\d+)-/.exec(r.range!)![1]));
      const resumes = starts.filter((start) => start > 0 && start !== FIRST_REQUEST_BYTES);
      expect(resumes.length).toBeGreaterThan(0);
      const resumedAt = resumes[0];
      expect(resumedAt).toBeGreaterThan(FIRST_REQUEST_BYTES);
      expect(atCut).toBeGreaterThanOrEqual(2);
      const sim = await pi.sim();
      expect(sim.bootedSlot).toBe('B');
      const written = await readFile(sim.slots.B.rootfs);
      expect(written.subarray(0, rootfs.length).equals(rootfs)).toBe(true);
    } finally {
      world.files.faults.bytesPerSecond = undefined;
    }
  });

  it('a power cut during the trial boot falls back: applyFailed, never applyComplete', async () => {
    const pi = await world.pi('cut-trial', { daemonConfig: { trialTimeoutSeconds: 60 } });
    const { url } = await world.bundle('fw-cut-trial', { version: '1.2.0' });
    const answer = await world.invoke('cut-trial', 'firmwareUpdate', { fwPackageUri: url });
    const updateId = answer.payload.updateId as string;
    await world.waitForUpdate('cut-trial', updateId, (fu) => fu.status === 'applying');
    // Take the hub away so the trial cannot become healthy, and cut the power while it waits.
    await world.stopHub();
    try {
      await waitFor('the trial boot', async () => {
        const s = await pi.sim();
        return s.trial && s.bootedSlot === 'B' && s.daemonPid !== null && (await pi.state()).update?.phase === 'trial';
      }, 20_000);
      await pi.powerCut();
      const s = await pi.sim();
      expect(s).toMatchObject({ bootedSlot: 'A', trial: false });
      await waitFor('the failure persisted', async () => (await pi.state()).update?.phase === 'applyFailed', 20_000);
    } finally {
      await world.restartHub();
    }
    // The status reached while the hub was down arrives once it is back.
    const done = await world.waitForUpdate('cut-trial', updateId, (fu) => fu.status === 'applyFailed');
    expect(done.iothubDM.firmwareUpdate.error.code).toBe('trialFailed');
    expect(done.iothubDM.firmwareVersion).toBe('1.0.0');
    expect(done.piota).toMatchObject({ bootedSlot: 'A', committedSlot: 'A' });
    expect((await pi.daemonLog())).not.toContain('"to":"applyComplete"');
  });

  it('an unhealthy trial (hub unreachable past the deadline) reports applyFailed after the hub returns', async () => {
    const pi = await world.pi('unhealthy', { daemonConfig: { trialTimeoutSeconds: 3 } });
    const { url } = await world.bundle('fw-unhealthy', { version: '1.3.0' });
    const answer = await world.invoke('unhealthy', 'firmwareUpdate', { fwPackageUri: url });
    const updateId = answer.payload.updateId as string;
    await world.waitForUpdate('unhealthy', updateId, (fu) => fu.status === 'applying');
    await world.stopHub();
    try {
      await waitFor('the fall-back to slot A', async () => {
        const s = await pi.sim();
        return s.bootedSlot === 'A' && s.bootCount >= 3 && (await pi.state()).update?.phase === 'applyFailed';
      }, 30_000);
    } finally {
      await world.restartHub();
    }
    const done = await world.waitForUpdate('unhealthy', updateId, (fu) => fu.status === 'applyFailed');
    expect(done.iothubDM.firmwareUpdate.error.code).toBe('trialUnhealthy');
    expect(done.iothubDM.firmwareVersion).toBe('1.0.0');
    expect(await pi.autoboot()).toMatch(/\[all\][^[]*boot_partition=2/);
  });

  it('an update finishes while the hub is away and its applyComplete arrives when the hub is back', async () => {
    const pi = await world.pi('outage', { daemonConfig: { trialTimeoutSeconds: 60 } });
    world.files.faults.bytesPerSecond = 256 * 1024;
    const { url } = await world.bundle('fw-outage', { version: '1.4.0', rootfsBytes: 512 * 1024 });
    const answer = await world.invoke('outage', 'firmwareUpdate', { fwPackageUri: url });
    const updateId = answer.payload.updateId as string;
    await world.waitForUpdate('outage', updateId, (fu) => fu.status === 'downloading');
    await world.stopHub();
    world.files.faults.bytesPerSecond = undefined;
    // The download completes offline; the trial waits for the hub (the health check needs it).
    await waitFor('the trial boot', async () => (await pi.state()).update?.phase === 'trial', 30_000);
    await world.restartHub();
    const done = await world.waitForUpdate('outage', updateId, (fu) => fu.status === 'applyComplete');
    expect(done.iothubDM.firmwareVersion).toBe('1.4.0');
  });
});
