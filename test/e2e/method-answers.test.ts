import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { World } from './world.js';

let world: World;
beforeAll(async () => {
  world = await World.create();
}, 60_000);
afterAll(() => world?.close());

describe('firmwareUpdate answers', () => {
  let badPayloadsPi: Promise<unknown> | undefined;
  it.each([
    ['a payload with no fwPackageUri', {}, 'fwPackageUri is missing'],
    ['a non-https URI', { fwPackageUri: 'http://example.com/fw' }, 'must be an https:// URL'],
    ['a URI of the wrong type', { fwPackageUri: 42 }, 'fwPackageUri must be a string'],
    ['a number', 7, 'a number'],
    ['a bad sha256', { fwPackageUri: 'https://localhost/x', sha256: 'zz' }, 'sha256 must be 64 hexadecimal'],
  ])('answers 400 for %s, naming the problem, and changes nothing', async (_what, payload, message) => {
    await (badPayloadsPi ??= world.pi('bad-payloads')); // one Pi for all rows
    const before = await world.reported('bad-payloads');
    const answer = await world.invoke('bad-payloads', 'firmwareUpdate', payload);
    expect(answer.status).toBe(400);
    expect(answer.payload.message).toContain(message);
    const after = await world.reported('bad-payloads');
    expect(after.iothubDM).toEqual(before.iothubDM);
  });

  it('answers 409 to a second update while one runs, and 200 with the same id for the same URI', async () => {
    await world.pi('busy');
    world.files.faults.bytesPerSecond = 64 * 1024; // keep the first download going for a while
    try {
      const { url } = await world.bundle('fw-slow', { version: '1.0.1', rootfsBytes: 512 * 1024 });
      const { url: other } = await world.bundle('fw-other', { version: '1.0.2' });
      const first = await world.invoke('busy', 'firmwareUpdate', { fwPackageUri: url });
      expect(first.status).toBe(200);
      const again = await world.invoke('busy', 'firmwareUpdate', { fwPackageUri: url });
      expect(again.status).toBe(200);
      expect(again.payload.updateId).toBe(first.payload.updateId);
      const second = await world.invoke('busy', 'firmwareUpdate', { fwPackageUri: other });
      expect(second.status).toBe(409);
      expect(second.payload).toMatchObject({ updateId: first.payload.updateId });
      expect(['waiting', 'downloading']).toContain(second.payload.status);
      expect(second.payload.message).toContain('another update is in progress');

      // Cancel it while it downloads: it ends downloadFailed/cancelled and the boot is untouched.
      const cancel = await world.invoke('busy', 'firmwareUpdateCancel', null);
      expect(cancel.status).toBe(200);
      const done = await world.waitForUpdate('busy', first.payload.updateId as string, (fu) => fu.status === 'downloadFailed');
      expect(done.iothubDM.firmwareUpdate.error.code).toBe('cancelled');
      const idle = await world.invoke('busy', 'firmwareUpdateCancel', null);
      expect(idle).toEqual({ status: 200, payload: { message: 'nothing to cancel' } });
    } finally {
      world.files.faults.bytesPerSecond = undefined;
    }
  });

  it('accepts a bare JSON string holding the URI (Microsoft C sample) and the version pin', async () => {
    await world.pi('bare');
    const { url } = await world.bundle('fw-bare', { version: '1.0.3' });
    const answer = await world.invoke('bare', 'firmwareUpdate', url);
    expect(answer.status).toBe(200);
    await world.waitForUpdate('bare', answer.payload.updateId as string, (fu) => fu.status === 'applyComplete');
    // A version pin that does not match the bundle is refused before anything is written.
    const { url: next } = await world.bundle('fw-next', { version: '1.0.4' });
    const pinned = await world.invoke('bare', 'firmwareUpdate', { fwPackageUri: next, version: '9.9.9' });
    const done = await world.waitForUpdate('bare', pinned.payload.updateId as string, (fu) => fu.status === 'downloadFailed');
    expect(done.iothubDM.firmwareUpdate.error.code).toBe('versionMismatch');
    expect(done.iothubDM.firmwareVersion).toBe('1.0.3');
  });
});
