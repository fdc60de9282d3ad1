import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { createBundle } from '../../src/bundle/create.js';
import { generateKeyPair } from '../../src/bundle/keys.js';
import { verifyHeader } from '../../src/bundle/verifier.js';
import { tryAdaptiveDownload } from '../../src/adaptive/adaptive-download.js';
import { KEY_BYTES, buildSlotIndex, loadSlotIndex, saveSlotIndex, slotIndexInfo } from '../../src/adaptive/slot-index.js';
import {
  buildSlotIndexInBackground,
  dropSlotIndexes,
  slotIndexBuilding,
  slotIndexDir,
  slotIndexPath,
  stopSlotIndexBuilds,
} from '../../src/adaptive/slot-index-builds.js';
import { startTestFileServer, type TestFileServer } from '../helpers/https-file-server.js';
import { syntheticPair } from './synthetic.js';

const quiet = pino({ level: 'silent' });
const pair = syntheticPair();
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'piota-index-builds-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function keysOf(image: Buffer, blockSize = 4096): Buffer {
  const keys: Buffer[] = [];
  for (let at = 0; at < image.length; at += blockSize) keys.push(createHash('sha256').update(image.subarray(at, at + blockSize)).digest().subarray(0, KEY_BYTES));
  return Buffer.concat(keys);
}

describe('slot index builds', () => {
  it('one build per file: a second caller gets the same job, and the saved keys are the blocks\' sha256', async () => {
    const stateDir = join(dir, 'shared');
    const device = join(dir, 'shared.img');
    await writeFile(device, pair.release1);
    const first = buildSlotIndexInBackground(stateDir, 'A', 'rootfs', device, pair.release1.length, 0, quiet);
    const second = buildSlotIndexInBackground(stateDir, 'A', 'rootfs', device, pair.release1.length, 0, quiet);
    expect(second).toBe(first);
    expect(slotIndexBuilding(stateDir, 'A', 'rootfs')).toBe(true);
    expect(await first).toBe(true);
    expect(slotIndexBuilding(stateDir, 'A', 'rootfs')).toBe(false);
    const index = await loadSlotIndex(slotIndexPath(stateDir, 'A', 'rootfs'));
    expect(index).not.toBeNull();
    expect(Buffer.from(index!.keys).equals(keysOf(pair.release1))).toBe(true);
    const info = await slotIndexInfo(slotIndexPath(stateDir, 'A', 'rootfs'));
    expect(info).toEqual({ blockSize: 4096, size: pair.release1.length, builtAt: index!.builtAt });
  });

  it('a stopped build ends at once and saves nothing, not even a temp file', async () => {
    const stateDir = join(dir, 'stopped');
    const device = join(dir, 'stopped.img');
    await writeFile(device, Buffer.alloc(8 * 1024 * 1024, 1));
    // 256 KiB/s: 32 s for the 8 MiB, so the stop below comes in the middle.
    const job = buildSlotIndexInBackground(stateDir, 'A', 'rootfs', device, 8 * 1024 * 1024, 256 * 1024, quiet);
    await new Promise((r) => setTimeout(r, 300));
    const asked = Date.now();
    await stopSlotIndexBuilds(stateDir);
    // Generous for a loaded machine, far below the 32 s the build would take: the daemon's SIGTERM bound.
    expect(Date.now() - asked).toBeLessThan(2000);
    expect(await job).toBe(false);
    expect(await readdir(stateDir).catch(() => [])).toEqual([]);
  });

  it('a caller\'s signal stops the build it started', async () => {
    const stateDir = join(dir, 'signal');
    const device = join(dir, 'signal.img');
    await writeFile(device, Buffer.alloc(4 * 1024 * 1024, 2));
    const abort = new AbortController();
    const job = buildSlotIndexInBackground(stateDir, 'B', 'rootfs', device, 4 * 1024 * 1024, 256 * 1024, quiet, { signal: abort.signal });
    abort.abort();
    expect(await job).toBe(false);
    expect(await loadSlotIndex(slotIndexPath(stateDir, 'B', 'rootfs'))).toBeNull();
  });

  it('an unreadable partition fails the build (false, logged), it does not throw', async () => {
    const stateDir = join(dir, 'missing');
    expect(await buildSlotIndexInBackground(stateDir, 'A', 'rootfs', join(dir, 'no-such-device'), 4096, 0, quiet)).toBe(false);
    expect(await loadSlotIndex(slotIndexPath(stateDir, 'A', 'rootfs'))).toBeNull();
  });

  it('dropping a slot\'s indexes removes its files and its leftover temp files, not the other slot\'s', async () => {
    const stateDir = join(dir, 'drop');
    const index = await buildSlotIndex(join(dir, 'shared.img'), pair.release1.length);
    for (const name of ['A-rootfs', 'A-boot', 'B-rootfs']) await saveSlotIndex(slotIndexPath(stateDir, name.split('-')[0], name.split('-')[1]), index);
    await writeFile(join(slotIndexDir(stateDir), '.B-rootfs.bin.123.abcd.tmp'), 'half');
    await writeFile(join(slotIndexDir(stateDir), '.A-rootfs.bin.123.abcd.tmp'), 'half');
    await dropSlotIndexes(stateDir, 'B');
    expect((await readdir(slotIndexDir(stateDir))).sort()).toEqual(['.A-rootfs.bin.123.abcd.tmp', 'A-boot.bin', 'A-rootfs.bin']);
    await dropSlotIndexes(join(dir, 'no-state-yet'), 'B'); // no directory: nothing to do
  });

  it('an index file that is not a whole index reads as none', async () => {
    const stateDir = join(dir, 'damaged');
    const path = slotIndexPath(stateDir, 'A', 'rootfs');
    await saveSlotIndex(path, await buildSlotIndex(join(dir, 'shared.img'), pair.release1.length));
    const whole = await readFile(path);
    await writeFile(path, whole.subarray(0, whole.length - 1));
    expect(await slotIndexInfo(path)).toBeNull();
    expect(await loadSlotIndex(path)).toBeNull();
  });
});

describe('the download that overwrites a slot', () => {
  const keys = generateKeyPair();
  let server: TestFileServer;

  beforeAll(async () => {
    server = await startTestFileServer();
    await writeFile(join(dir, 'r2.img'), pair.release2);
    for (const formatVersion of [1, 2] as const) {
      await createBundle({
        out: join(dir, `r2-f${formatVersion}.piota`), version: '2', compatible: ['pi'], formatVersion, chunkSize: 64 * 1024,
        payloads: [{ name: 'rootfs', file: join(dir, 'r2.img') }], signingKeys: [keys.privateKeyPem],
      });
      server.add(`r2-f${formatVersion}.piota`, join(dir, `r2-f${formatVersion}.piota`));
    }
  });
  afterAll(async () => {
    await server.close();
  });

  async function install(name: string, formatVersion: 1 | 2) {
    const stateDir = join(dir, `${name}-state`);
    const running = join(dir, `${name}-A`);
    const target = join(dir, `${name}-B`);
    await writeFile(running, pair.release1);
    await writeFile(target, pair.release0);
    await mkdir(stateDir, { recursive: true });
    await saveSlotIndex(slotIndexPath(stateDir, 'A', 'rootfs'), await buildSlotIndex(running, pair.release1.length));
    await saveSlotIndex(slotIndexPath(stateDir, 'B', 'rootfs'), await buildSlotIndex(target, pair.release0.length));
    const file = join(dir, `r2-f${formatVersion}.piota`);
    const header = await verifyHeader(createReadStream(file), { trustedKeys: [keys.publicKeyPem] });
    await header.rest.return();
    const out = await open(target, 'r+');
    try {
      const stats = await tryAdaptiveDownload({
        url: server.url(`r2-f${formatVersion}.piota`), ca: server.ca, proxy: null, validator: server.etagOf(`r2-f${formatVersion}.piota`), header,
        runningPartitions: { rootfs: running }, targetPartitions: { rootfs: target }, runningSlot: 'A', targetSlot: 'B',
        stateDir, fromChunk: 0, logger: quiet,
        write: async (_p, offset, data) => void (await out.write(data, 0, data.length, offset)),
        afterChunk: async () => undefined,
      });
      return { stats, stateDir, target };
    } finally {
      await out.close();
    }
  }

  it('drops the target slot\'s index once read, reuses its blocks, and still writes exactly the new image', async () => {
    const { stats, stateDir, target } = await install('adaptive', 2);
    expect(stats).not.toBeNull();
    expect(stats!.bytesReused).toBeGreaterThan(0);
    expect((await readFile(target)).equals(pair.release2)).toBe(true);
    expect(await loadSlotIndex(slotIndexPath(stateDir, 'B', 'rootfs'))).toBeNull();
    // The running slot's index stays: it is the next update's target index.
    expect(await loadSlotIndex(slotIndexPath(stateDir, 'A', 'rootfs'))).not.toBeNull();
  });

  it('drops it for a format 1 bundle too, which the full download then writes', async () => {
    const { stats, stateDir } = await install('format1', 1);
    expect(stats).toBeNull();
    expect(await loadSlotIndex(slotIndexPath(stateDir, 'B', 'rootfs'))).toBeNull();
    expect(await loadSlotIndex(slotIndexPath(stateDir, 'A', 'rootfs'))).not.toBeNull();
  });
});
