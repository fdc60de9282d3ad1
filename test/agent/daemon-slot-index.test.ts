import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { addDevice, type RunningHub } from '../../src/hub-emulator/index.js';
import { startDaemon } from '../../src/agent/daemon.js';
import { validateConfig } from '../../src/agent/config.js';
import { buildSlotIndex, loadSlotIndex } from '../../src/adaptive/slot-index.js';
import { slotIndexBuilding, slotIndexPath } from '../../src/adaptive/slot-index-builds.js';
import { removeDir, startTestHub, tempDir } from '../hub-emulator/helpers.js';
import { waitFor } from '../helpers/wait-for.js';
import { seeded } from '../helpers/seeded-random.js';
import { FakeBoot, silentLogger } from './fakes/ports.js';

// The real daemon (in this process, a stand-in boot firmware, the hub emulator) builds the index of
// the slot it runs from in idle time, and a stop in the middle of that build ends it promptly.
let dir: string;
let hub: RunningHub;

beforeAll(async () => {
  dir = await tempDir();
  hub = await startTestHub(join(dir, 'hub'));
}, 30_000);
afterAll(async () => {
  await hub?.close();
  await removeDir(dir);
});

async function device(id: string, slotIndex: Record<string, unknown>, boot = new FakeBoot(), extra: Record<string, unknown> = {}) {
  const root = join(dir, id);
  const stateDir = join(root, 'state');
  await mkdir(stateDir, { recursive: true });
  await writeFile(join(stateDir, 'connection-string'), await addDevice(join(dir, 'hub'), id));
  await writeFile(join(root, 'key.pub'), '-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n');
  const random = seeded(id.length);
  for (const part of ['a-rootfs', 'a-boot', 'b-rootfs', 'b-boot']) {
    const image = Buffer.alloc(part.endsWith('rootfs') ? 2 * 1024 * 1024 : 512 * 1024);
    for (let i = 0; i < image.length; i += 4) image.writeUInt32LE(Math.floor(random() * 2 ** 32), i);
    await writeFile(join(root, part), image);
  }
  const config = validateConfig({
    model: 'raspberrypi4-64',
    stateDir,
    runtimeDir: join(root, 'run'),
    trustedKeys: [join(root, 'key.pub')],
    hubCaFile: hub.info.caFile,
    slots: { A: { rootfs: join(root, 'a-rootfs'), boot: join(root, 'a-boot') }, B: { rootfs: join(root, 'b-rootfs'), boot: join(root, 'b-boot') } },
    boot: { backend: 'tryboot', autobootFile: join(root, 'autoboot.txt'), bootPartitions: { A: 2, B: 3 } },
    slotIndex,
    ...extra,
  });
  const daemon = await startDaemon(config, silentLogger, '0.2.0-test', { boot, systemd: false });
  return { daemon, stateDir, root };
}

describe('the daemon builds the running slot\'s index in idle time', () => {
  it('after start-up on the committed slot, an index of each of its partitions appears (and none of the other slot)', async () => {
    const { daemon, stateDir, root } = await device('idle-index', {});
    try {
      for (const [payload, file] of [['rootfs', 'a-rootfs'], ['boot', 'a-boot']]) {
        const path = slotIndexPath(stateDir, 'A', payload);
        const saved = await waitFor(`the index of A ${payload}`, () => loadSlotIndex(path).then((i) => i ?? undefined), 20_000);
        const expected = await buildSlotIndex(join(root, file), saved.size);
        expect(Buffer.from(saved.keys).equals(Buffer.from(expected.keys))).toBe(true);
      }
      expect((await readdir(join(stateDir, 'slot-index'))).filter((n) => n.startsWith('B-'))).toEqual([]);
    } finally {
      await daemon.stop();
    }
  });

  it('not during a trial boot (the booted slot is not committed yet)', async () => {
    const { daemon, stateDir } = await device('trial-index', {}, new FakeBoot('B', 'A', true));
    try {
      // The hub sees the device: start-up is over, and the idle check ran then.
      await waitFor('the device to connect', async () => hub.connectedDevices().includes('trial-index'), 20_000);
      expect(slotIndexBuilding(stateDir, 'B', 'rootfs') || slotIndexBuilding(stateDir, 'A', 'rootfs')).toBe(false);
      expect(await readdir(join(stateDir, 'slot-index')).catch(() => [])).toEqual([]);
    } finally {
      await daemon.stop();
    }
  });

  it('a stop in the middle of the build ends the daemon promptly and leaves no index, no temp file', async () => {
    // 64 KiB/s: the 2 MiB rootfs would take 32 s.
    const { daemon, stateDir } = await device('stopped-index', { bytesPerSecond: 65_536 });
    await waitFor('the idle build to start', async () => slotIndexBuilding(stateDir, 'A', 'rootfs'), 20_000);
    const asked = Date.now();
    await daemon.stop();
    // The SIGTERM bound (systemd waits for the daemon; a reboot waits for systemd).
    expect(Date.now() - asked).toBeLessThan(2000);
    expect(slotIndexBuilding(stateDir, 'A', 'rootfs')).toBe(false);
    expect(await readdir(join(stateDir, 'slot-index')).catch(() => [])).toEqual([]);
  });

  it('slotIndex.bytesPerSecond 0, or download.adaptive false: no build in idle time', async () => {
    for (const [id, slotIndex, extra] of [['no-idle-index', { bytesPerSecond: 0 }, {}], ['not-adaptive', {}, { download: { adaptive: false } }]] as const) {
      const { daemon, stateDir } = await device(id, slotIndex, new FakeBoot(), extra);
      try {
        await waitFor('the device to connect', async () => hub.connectedDevices().includes(id), 20_000);
        expect(slotIndexBuilding(stateDir, 'A', 'rootfs')).toBe(false);
        expect(await readdir(join(stateDir, 'slot-index')).catch(() => [])).toEqual([]);
      } finally {
        await daemon.stop();
      }
    }
  });
});
