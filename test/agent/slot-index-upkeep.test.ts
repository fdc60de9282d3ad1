import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { buildSlotIndex, loadSlotIndex, saveSlotIndex, slotIndexInfo } from '../../src/adaptive/slot-index.js';
import { buildSlotIndexInBackground, slotIndexBuilding, slotIndexPath } from '../../src/adaptive/slot-index-builds.js';
import { SlotIndexUpkeep, type SlotIndexUpkeepOptions } from '../../src/agent/slot-index-upkeep.js';
import { seeded } from '../helpers/seeded-random.js';
import { waitFor } from '../helpers/wait-for.js';

const quiet = pino({ level: 'silent' });
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'piota-index-upkeep-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function randomImage(bytes: number, seed: number): Buffer {
  const random = seeded(seed);
  const b = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += 4) b.writeUInt32LE(Math.floor(random() * 2 ** 32), i);
  return b;
}

/** A slot of real files: a 1 MiB rootfs and a 256 KiB boot partition. */
async function slot(name: string, installedAt: string | null = null, bytesPerSecond = 0): Promise<SlotIndexUpkeepOptions & { record: { installedAt: string | null } }> {
  const rootfs = join(dir, `${name}-rootfs`);
  const boot = join(dir, `${name}-boot`);
  await writeFile(rootfs, randomImage(1024 * 1024, 1));
  await writeFile(boot, randomImage(256 * 1024, 2));
  const record = { installedAt };
  return {
    record,
    stateDir: join(dir, `${name}-state`),
    slot: 'A',
    partitions: { rootfs, boot },
    installedAt: () => record.installedAt,
    bytesPerSecond,
    partitionSize: async (path) => (await stat(path)).size,
    logger: quiet,
  };
}

describe('the slot index upkeep (idle time)', () => {
  it('builds the index of every partition of the running slot that has none', async () => {
    const o = await slot('missing');
    const upkeep = new SlotIndexUpkeep(o);
    upkeep.start();
    await upkeep.settled();
    for (const [payload, device] of Object.entries(o.partitions)) {
      const saved = await loadSlotIndex(slotIndexPath(o.stateDir, 'A', payload));
      const direct = await buildSlotIndex(device, (await stat(device)).size);
      expect(saved?.blockSize).toBe(4096);
      expect(Buffer.from(saved!.keys).equals(Buffer.from(direct.keys))).toBe(true);
    }
  });

  it('leaves a fresh index alone, and rebuilds one built for another block size or before the slot was last written', async () => {
    const o = await slot('stale');
    const upkeep = new SlotIndexUpkeep(o);
    upkeep.start();
    await upkeep.settled();
    const builtAt = (p: string) => slotIndexInfo(slotIndexPath(o.stateDir, 'A', p)).then((i) => i!.builtAt);
    const first = { rootfs: await builtAt('rootfs'), boot: await builtAt('boot') };

    upkeep.start();
    await upkeep.settled();
    expect(await builtAt('rootfs')).toBe(first.rootfs);

    // The boot partition's index made for 16 KiB blocks; the rootfs written after its index was built.
    await saveSlotIndex(slotIndexPath(o.stateDir, 'A', 'boot'), await buildSlotIndex(o.partitions.boot, 256 * 1024, { blockSize: 16384 }));
    o.record.installedAt = new Date(first.rootfs + 1).toISOString();
    await new Promise((r) => setTimeout(r, 5));
    upkeep.start();
    await upkeep.settled();
    expect(await builtAt('rootfs')).toBeGreaterThan(first.rootfs);
    expect((await slotIndexInfo(slotIndexPath(o.stateDir, 'A', 'boot')))!.blockSize).toBe(4096);
  });

  it('a start while a pass runs does not start a second build of the same file; a download asking for it joins it', async () => {
    const o = await slot('joined', null, 4 * 1024 * 1024);
    const upkeep = new SlotIndexUpkeep(o);
    upkeep.start();
    upkeep.start();
    // The download that finds no index of the running slot asks for the same build: it gets the same job.
    await waitFor('the idle build of the rootfs index', async () => slotIndexBuilding(o.stateDir, 'A', 'rootfs'), 10_000);
    const joined = buildSlotIndexInBackground(o.stateDir, 'A', 'rootfs', o.partitions.rootfs, 1, 0, quiet);
    await upkeep.settled();
    expect(await joined).toBe(true);
    // Had the download's own build (1 byte, no pace) run instead, the index would cover 1 byte.
    expect((await slotIndexInfo(slotIndexPath(o.stateDir, 'A', 'rootfs')))!.size).toBe(1024 * 1024);
  });

  it('stop() during a paced build ends promptly and leaves no index and no temp file', async () => {
    const o = await slot('stopped', null, 128 * 1024); // 8 s for the rootfs at this pace
    const upkeep = new SlotIndexUpkeep(o);
    upkeep.start();
    await new Promise((r) => setTimeout(r, 300));
    const asked = Date.now();
    await upkeep.stop();
    // The daemon must end within 2 s of SIGTERM; the build would take 8 s more.
    expect(Date.now() - asked).toBeLessThan(2000);
    expect(await readdir(join(o.stateDir, 'slot-index')).catch(() => [])).toEqual([]);
    upkeep.start(); // stopped for good
    await upkeep.settled();
    expect(await readdir(join(o.stateDir, 'slot-index')).catch(() => [])).toEqual([]);
  });

  it('a partition that cannot be read is logged and the pass ends; the next start tries again', async () => {
    const o = await slot('unreadable');
    const warnings: string[] = [];
    const upkeep = new SlotIndexUpkeep({ ...o, partitions: { rootfs: join(dir, 'no-such-partition') }, logger: { info: () => undefined, warn: (_o: unknown, msg?: string) => void warnings.push(String(msg)) } as never });
    upkeep.start();
    await upkeep.settled();
    expect(warnings.join('\n')).toMatch(/no-such-partition|slot index/);
    expect(await readdir(join(o.stateDir, 'slot-index')).catch(() => [])).toEqual([]);
  });
});
