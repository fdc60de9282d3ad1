import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { AlignedBufferPool, allocAligned, isAligned } from '../../src/slots/aligned-buffer.js';
import { openPartitionForWrite } from '../../src/slots/index.js';
import { attachLoop, detachLoop, loopDevicesUnavailable } from './loop-device.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'piota-direct-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Pages of `path` in the page cache, by util-linux's fincore (undefined when it is missing). */
function cachedPages(path: string): number | undefined {
  const r = spawnSync('fincore', ['--bytes', '--noheadings', '--output', 'PAGES', path], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return undefined;
  return Number(r.stdout.trim());
}
const noFincore = spawnSync('fincore', ['--version']).status !== 0 ? 'fincore (util-linux) is not installed' : undefined;

describe('aligned buffers', () => {
  it('are page aligned and known as such; an ordinary Buffer is not', () => {
    const b = allocAligned(10_000);
    expect(b.length).toBe(10_000);
    expect(isAligned(b)).toBe(true);
    expect(isAligned(b.subarray(4096))).toBe(true);
    expect(isAligned(b.subarray(512))).toBe(false);
    expect(isAligned(Buffer.alloc(8192))).toBe(false);
  });

  it('a pool reuses its buffers: as many exist as were out at once, whatever the number of chunks', () => {
    const pool = new AlignedBufferPool(64 * 1024);
    const out: Buffer[] = [];
    for (let i = 0; i < 500; i++) {
      out.push(pool.take(i % 7 === 0 ? 1000 : 64 * 1024));
      if (out.length > 3) pool.give(out.shift()!);
    }
    expect(pool.allocated).toBe(4);
    expect(out.every((b) => isAligned(b))).toBe(true);
    // Larger than the pool's buffers: a fresh one, which the pool neither counts nor keeps.
    const big = pool.take(64 * 1024 + 1);
    pool.give(big);
    expect(pool.allocated).toBe(4);
  });
});

describe('the slot writer with O_DIRECT', () => {
  async function writeImage(path: string, image: Buffer, chunk: number) {
    const pool = new AlignedBufferPool(chunk);
    const writer = await openPartitionForWrite(path);
    for (let at = 0; at < image.length; at += chunk) {
      const data = pool.take(Math.min(chunk, image.length - at));
      image.copy(data, 0, at, at + data.length);
      await writer.write(at, data);
      pool.give(data);
    }
    const direct = writer.direct;
    await writer.close();
    return direct;
  }

  it('writes aligned chunks and an unaligned tail; the bytes are the image', async () => {
    const path = join(dir, 'slot.img');
    await writeFile(path, Buffer.alloc(4 << 20));
    const image = randomBytes((3 << 20) + 12_345);
    await writeImage(path, image, 1 << 20);
    const back = await readFile(path);
    expect(back.subarray(0, image.length).equals(image)).toBe(true);
    expect(back.subarray(image.length).every((b) => b === 0)).toBe(true);
  });

  it.skipIf(noFincore)(`aligned chunks bypass the page cache where the file system takes O_DIRECT${noFincore ? ` (skipped: ${noFincore})` : ''}`, async () => {
    const path = join(dir, 'slot.img');
    await writeFile(path, Buffer.alloc(8 << 20));
    spawnSync('dd', [`if=${path}`, 'of=/dev/null', 'iflag=nocache', 'count=0', 'status=none']);
    const image = randomBytes(8 << 20);
    const direct = await writeImage(path, image, 1 << 20);
    const pages = cachedPages(path)!;
    if (direct) {
      // 2048 pages were written; none of them went through the cache (a few may be cached by the earlier writeFile).
      expect(pages).toBeLessThan(2048);
      const buffered = join(dir, 'buffered.img');
      await writeFile(buffered, image);
      expect(cachedPages(buffered)).toBe(2048);
    } else {
      // This file system refuses O_DIRECT (tmpfs): the writer said so and wrote through the cache.
      expect(pages).toBe(2048);
    }
    expect((await readFile(path)).equals(image)).toBe(true);
  });

  const noLoop = loopDevicesUnavailable();
  it.skipIf(noLoop)(`a loop device takes O_DIRECT writes, and reads back the image${noLoop ? ` (skipped: ${noLoop})` : ''}`, async () => {
    const file = join(dir, 'disk.img');
    await writeFile(file, Buffer.alloc(4 << 20));
    const dev = attachLoop(file);
    try {
      const image = randomBytes((2 << 20) + 4096 + 100);
      expect(await writeImage(dev, image, 1 << 20)).toBe(true);
      const back = await readFile(file);
      expect(back.subarray(0, image.length).equals(image)).toBe(true);
    } finally {
      detachLoop(dev);
    }
  });
});
