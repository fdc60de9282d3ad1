import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { World } from './world.js';

// Unsigned plain images: only where the config allows them, only pinned by sha256, only with a
// Content-Length (so the size check happens before writing).
let world: World;
let url: string;
let image: Buffer;
let sha256: string;
beforeAll(async () => {
  world = await World.create();
  image = randomBytes(300 * 1024);
  sha256 = createHash('sha256').update(image).digest('hex');
  await writeFile(join(world.dir, 'plain.img'), image);
  world.files.add('plain.img', join(world.dir, 'plain.img'));
  url = world.files.url('plain.img');
}, 60_000);
afterAll(() => world?.close());

const ended = (fu: Record<string, any>) => ['applyComplete', 'applyFailed', 'downloadFailed'].includes(fu.status);

describe('plain images', () => {
  it('installs a pinned plain image where the config allows it', async () => {
    const pi = await world.pi('plain-ok', { daemonConfig: { allowPlainImages: true } });
    const answer = await world.invoke('plain-ok', 'firmwareUpdate', { fwPackageUri: url, sha256, version: '7.0.0' });
    const done = await world.waitForUpdate('plain-ok', answer.payload.updateId as string, ended);
    expect(done.iothubDM.firmwareUpdate.status).toBe('applyComplete');
    expect(done.iothubDM.firmwareVersion).toBe('7.0.0');
    const written = await readFile((await pi.sim()).slots.B.rootfs);
    expect(written.subarray(0, image.length).equals(image)).toBe(true);
  });

  it('refuses a plain image without a pin, with a wrong pin, or without Content-Length', async () => {
    const pi = await world.pi('plain-refused', { daemonConfig: { allowPlainImages: true } });
    const autoboot = await pi.autoboot();
    let answer = await world.invoke('plain-refused', 'firmwareUpdate', { fwPackageUri: url });
    let done = await world.waitForUpdate('plain-refused', answer.payload.updateId as string, ended);
    expect(done.iothubDM.firmwareUpdate.error.code).toBe('notABundle');
    answer = await world.invoke('plain-refused', 'firmwareUpdate', { fwPackageUri: url, sha256: 'ab'.repeat(32) });
    done = await world.waitForUpdate('plain-refused', answer.payload.updateId as string, ended);
    expect(done.iothubDM.firmwareUpdate.error.code).toBe('sha256Mismatch');
    world.files.faults.noContentLength = true;
    try {
      answer = await world.invoke('plain-refused', 'firmwareUpdate', { fwPackageUri: url, sha256 });
      done = await world.waitForUpdate('plain-refused', answer.payload.updateId as string, ended);
      expect(done.iothubDM.firmwareUpdate.error.code).toBe('noContentLength');
    } finally {
      world.files.faults.noContentLength = false;
    }
    expect(await pi.autoboot()).toBe(autoboot);
  });

  it('refuses plain images where the config does not allow them, even pinned', async () => {
    await world.pi('plain-off');
    const answer = await world.invoke('plain-off', 'firmwareUpdate', { fwPackageUri: url, sha256 });
    const done = await world.waitForUpdate('plain-off', answer.payload.updateId as string, ended);
    expect(done.iothubDM.firmwareUpdate.status).toBe('downloadFailed');
    expect(done.iothubDM.firmwareUpdate.error.code).toBe('notABundle');
  });
});
