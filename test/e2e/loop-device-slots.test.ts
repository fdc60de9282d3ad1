import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { open, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { attachLoop, detachLoop, loopDevicesUnavailable } from '../slots/loop-device.js';
import { World } from './world.js';

// The same update with every slot partition a real block device (loop devices over files): the
// daemon sizes them from sysfs, writes them, and reads them back with O_DIRECT from the medium.
const unavailable = loopDevicesUnavailable();
if (unavailable) console.log(`loop-device slot tests skipped: ${unavailable}`);

describe.skipIf(unavailable !== undefined)('loop-device slots', () => {
  let world: World;
  const devices: string[] = [];
  beforeAll(async () => {
    world = await World.create();
  }, 60_000);
  afterAll(async () => {
    await world?.close();
    for (const d of devices) detachLoop(d);
  });

  it('updates slot B on block devices to applyComplete', async () => {
    const slots: Record<string, Record<string, string>> = { A: {}, B: {} };
    for (const slot of ['A', 'B']) {
      for (const part of ['boot', 'rootfs']) {
        const file = join(world.dir, `${slot}-${part}.loop`);
        await (await open(file, 'w')).close();
        await truncate(file, 2 * 1024 * 1024);
        const dev = attachLoop(file);
        devices.push(dev);
        slots[slot][part] = dev;
      }
    }
    const pi = await world.pi('loopy', { daemonConfig: { slots } });
    const { url, rootfs } = await world.bundle('fw-loop', { version: '3.0.0', rootfsBytes: 1024 * 1024 });
    const answer = await world.invoke('loopy', 'firmwareUpdate', { fwPackageUri: url });
    expect(answer.status).toBe(200);
    const done = await world.waitForUpdate('loopy', answer.payload.updateId as string, (fu) => ['applyComplete', 'applyFailed', 'downloadFailed'].includes(fu.status));
    expect(done.iothubDM.firmwareUpdate).toMatchObject({ status: 'applyComplete' });
    expect(done.iothubDM.firmwareVersion).toBe('3.0.0');
    const fh = await open(slots.B.rootfs, 'r');
    const back = Buffer.alloc(rootfs.length);
    await fh.read(back, 0, back.length, 0);
    await fh.close();
    expect(back.equals(rootfs)).toBe(true);
    expect((await pi.sim()).bootedSlot).toBe('B');
  });

  it('refuses a payload larger than its block device before writing a byte', async () => {
    const target = devices[3]; // slot B rootfs, 2 MiB
    const before = await readDevice(target);
    await world.pi('loopy-small', { daemonConfig: { slots: { A: { boot: devices[0], rootfs: devices[1] }, B: { boot: devices[2], rootfs: target } } } });
    const { url } = await world.bundle('fw-too-big', { version: '3.1.0', rootfsBytes: 3 * 1024 * 1024 });
    const answer = await world.invoke('loopy-small', 'firmwareUpdate', { fwPackageUri: url });
    const done = await world.waitForUpdate('loopy-small', answer.payload.updateId as string, (fu) => fu.status === 'downloadFailed');
    expect(done.iothubDM.firmwareUpdate.error.code).toBe('tooLarge');
    expect((await readDevice(target)).equals(before)).toBe(true);
  });
});

async function readDevice(path: string): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(2 * 1024 * 1024);
    await fh.read(b, 0, b.length, 0);
    return b;
  } finally {
    await fh.close();
  }
}
