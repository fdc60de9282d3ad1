import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBundle } from '../../src/bundle/create.js';
import { readBundleFileHeader } from '../../src/bundle/inspect.js';
import type { BundleManifest } from '../../src/bundle/manifest.js';
import { BlockLookup } from '../../src/adaptive/block-lookup.js';
import { fetchBlockIndex, installAdaptive, IndexUntrusted, type PayloadTarget } from '../../src/adaptive/install.js';
import { FETCH, TARGET, planChunk, unitOffsets } from '../../src/adaptive/plan.js';
import { unpackIndex, type BlockIndex } from '../../src/bundle/block-index.js';
import { rangeClient, RangeRefused, type RangeFetcher } from '../../src/adaptive/range-client.js';
import { KEY_BYTES, buildSlotIndex } from '../../src/adaptive/slot-index.js';
import { openSlotReader } from '../../src/adaptive/slot-reader.js';
import { isAligned } from '../../src/slots/aligned-buffer.js';
import { startTestFileServer, type TestFileServer } from '../helpers/https-file-server.js';
import { BLOCK, syntheticPair } from './synthetic.js';

const CHUNK = 64 * 1024;
let dir: string;
let server: TestFileServer;
const pair = syntheticPair();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'piota-adaptive-'));
  server = await startTestFileServer();
  await writeFile(join(dir, 'r1.img'), pair.release1);
  await writeFile(join(dir, 'r2.img'), pair.release2);
  await createBundle({
    out: join(dir, 'r2.piota'), version: '2', compatible: ['pi'], formatVersion: 2, chunkSize: CHUNK,
    payloads: [{ name: 'rootfs', file: join(dir, 'r2.img') }],
  });
  server.add('r2.piota', join(dir, 'r2.piota'));
});
afterAll(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

interface Device {
  running: string;
  target: string;
}

async function device(name: string, targetContent: Buffer): Promise<Device> {
  const d = { running: join(dir, `${name}-running`), target: join(dir, `${name}-target`) };
  await writeFile(d.running, pair.release1);
  await writeFile(d.target, targetContent);
  return d;
}

async function install(
  d: Device,
  fetcher: RangeFetcher,
  options: { staleAfterIndex?: () => Promise<void>; fromChunk?: number; onWrite?: (offset: number, data: Buffer) => void } = {},
) {
  const { manifest } = await readBundleFileHeader(join(dir, 'r2.piota'));
  const payload = manifest.payloads[0];
  const size = pair.release1.length;
  const runningIndex = await buildSlotIndex(d.running, size);
  const targetIndex = await buildSlotIndex(d.target, size);
  await options.staleAfterIndex?.();
  const index = await fetchBlockIndex(fetcher, payload);
  const running = await openSlotReader(d.running);
  const target = await openSlotReader(d.target);
  const out = await open(d.target, 'r+');
  const t: PayloadTarget = {
    payload,
    index,
    sources: { running: new BlockLookup(runningIndex.keys, KEY_BYTES), target: new BlockLookup(targetIndex.keys, KEY_BYTES, true) },
    running,
    target,
    write: async (offset, data) => {
      options.onWrite?.(offset, data);
      await out.write(data, 0, data.length, offset);
    },
  };
  const written: number[] = [];
  try {
    const stats = await installAdaptive({
      manifest, payloads: new Map([['rootfs', t]]), fetcher, fromChunk: options.fromChunk ?? 0,
      afterChunk: async (c) => void written.push(c),
    });
    return { stats, written, manifest };
  } finally {
    await out.close();
    await running.close();
    await target.close();
  }
}

describe('an adaptive install', () => {
  it('writes exactly release 2, fetching a small share of the bundle and reusing the rest', async () => {
    const d = await device('plain', pair.release0);
    const fetcher = rangeClient({ url: server.url('r2.piota'), ca: server.ca });
    const { stats, manifest } = await install(d, fetcher);
    fetcher.close();
    expect((await readFile(d.target)).subarray(0, pair.release2.length).equals(pair.release2)).toBe(true);
    const full = manifest.bundleSize;
    // About 7 % of the blocks are new; the index and the merged ranges add a little.
    expect(stats.bytesFetched).toBeGreaterThan(0);
    expect(stats.bytesFetched / full).toBeLessThan(0.25);
    expect(stats.bytesReused).toBeGreaterThan(pair.release2.length * 0.4);
    expect(stats.refetchedChunks).toBe(0);
    // Release 2's free space is zero in release 0 too: those chunks are compared, not written.
    expect(stats.chunksInPlace).toBeGreaterThan(0);
  });

  it('writes a chunk of zeros where the target holds anything else', async () => {
    const d = await device('not-zero', Buffer.alloc(pair.release0.length, 0x5a));
    const fetcher = rangeClient({ url: server.url('r2.piota'), ca: server.ca });
    const { stats } = await install(d, fetcher);
    fetcher.close();
    expect(stats.chunksInPlace).toBe(0);
    expect((await readFile(d.target)).subarray(0, pair.release2.length).equals(pair.release2)).toBe(true);
  });

  it('writes the chunks in ascending order, each whole chunk from an aligned buffer (O_DIRECT), with the units asked for ahead', async () => {
    const d = await device('pipeline', pair.release0);
    const real = rangeClient({ url: server.url('r2.piota'), ca: server.ca });
    const events: string[] = [];
    // Our own small port, recording: every range asked for, in order with the writes.
    const fetcher: RangeFetcher = {
      fetch: (start, end, signal) => {
        events.push(`fetch ${start}`);
        return real.fetch(start, end, signal);
      },
      get bytesFetched() {
        return real.bytesFetched;
      },
      close: () => real.close(),
    };
    const unaligned: number[] = [];
    const { written, manifest, stats } = await install(d, fetcher, {
      onWrite: (offset, data) => {
        events.push(`write ${offset}`);
        if (data.length === CHUNK && !isAligned(data)) unaligned.push(offset);
      },
    });
    fetcher.close();
    expect(written).toEqual(manifest.chunks.map((_, i) => i));
    expect(unaligned).toEqual([]);
    expect((await readFile(d.target)).subarray(0, pair.release2.length).equals(pair.release2)).toBe(true);
    // This pair's units fit the prefetch budget: every unit range (after the index) is asked for
    // before the first chunk is written, so the link never waits for the slot.
    const firstWrite = events.findIndex((e) => e.startsWith('write'));
    const fetches = events.filter((e) => e.startsWith('fetch'));
    expect(fetches.length).toBeGreaterThan(2);
    expect(events.lastIndexOf(fetches[fetches.length - 1])).toBeLessThan(firstWrite);
    expect(stats.staleBlocks).toBe(0);
  });

  it('reuses a target slot holding release 2 one chunk further on while the chunks before are written', async () => {
    // Every block of chunk c sits at chunk c+1 of the target: allowed by the order rule, and read
    // while chunks before c are being written (the assembly runs ahead of the writes).
    const shifted = Buffer.alloc(pair.release2.length + CHUNK);
    pair.release2.copy(shifted, CHUNK);
    const d = await device('ahead', shifted);
    await writeFile(d.running, Buffer.alloc(pair.release1.length)); // nothing to reuse there
    const fetcher = rangeClient({ url: server.url('r2.piota'), ca: server.ca });
    const { stats } = await install(d, fetcher);
    fetcher.close();
    expect((await readFile(d.target)).subarray(0, pair.release2.length).equals(pair.release2)).toBe(true);
    expect(stats.bytesReused).toBeGreaterThan(pair.release2.length * 0.5);
    expect(stats.refetchedChunks).toBe(0);
  });

  it('is still exact when the running slot changed after its index was built (stale blocks are fetched)', async () => {
    const d = await device('stale', pair.release0);
    const fetcher = rangeClient({ url: server.url('r2.piota'), ca: server.ca });
    const { stats } = await install(d, fetcher, {
      staleAfterIndex: async () => {
        const fh = await open(d.running, 'r+');
        await fh.write(Buffer.alloc(BLOCK * 4, 0x5a), 0, BLOCK * 4, 20 * BLOCK); // the running root was written to
        await fh.close();
      },
    });
    fetcher.close();
    expect(stats.staleBlocks).toBeGreaterThanOrEqual(4);
    expect((await readFile(d.target)).subarray(0, pair.release2.length).equals(pair.release2)).toBe(true);
  });

  it('resumes at a chunk and writes the same bytes', async () => {
    const d = await device('resume', pair.release0);
    const fetcher = rangeClient({ url: server.url('r2.piota'), ca: server.ca });
    const first = await install(d, fetcher);
    expect(first.written[0]).toBe(0);
    // Chunks 0..4 are on the medium; a restart continues at chunk 5 with the target index rebuilt.
    const again = await install(d, fetcher, { fromChunk: 5 });
    fetcher.close();
    expect(again.written[0]).toBe(5);
    expect((await readFile(d.target)).subarray(0, pair.release2.length).equals(pair.release2)).toBe(true);
  });
});

describe('the order rule for reusing blocks of the slot being written', () => {
  it('never plans a target block that lies before the chunk being written', async () => {
    const d = await device('order', pair.release0);
    const { manifest } = await readBundleFileHeader(join(dir, 'r2.piota'));
    const fetcher = rangeClient({ url: server.url('r2.piota'), ca: server.ca });
    const index = await fetchBlockIndex(fetcher, manifest.payloads[0]);
    fetcher.close();
    // Only the target slot as a source, holding release 2 shifted by one chunk: every block of chunk
    // c sits at chunk c+1 of the target (allowed), and chunk 0's content... at chunk 1.
    const shifted = Buffer.alloc(pair.release2.length + CHUNK);
    pair.release2.copy(shifted, CHUNK);
    await writeFile(d.target, shifted);
    const lookup = new BlockLookup((await buildSlotIndex(d.target, shifted.length)).keys, KEY_BYTES, true);
    let targetBlocks = 0;
    for (let c = 0; c < manifest.payloads[0].chunkCount; c++) {
      const plan = planChunk(index, c, { target: lookup });
      plan.kind.forEach((k, i) => {
        if (k !== TARGET) return;
        targetBlocks++;
        expect(plan.from[i] * BLOCK).toBeGreaterThanOrEqual(c * CHUNK);
      });
    }
    expect(targetBlocks).toBeGreaterThan(0);
    // Shifted the other way (release 2's chunk c+1 sits at chunk c of the target): those blocks are
    // already overwritten when chunk c+1 is written, so they are fetched.
    const back = pair.release2.subarray(CHUNK);
    await writeFile(d.target, back);
    const early = new BlockLookup((await buildSlotIndex(d.target, back.length)).keys, KEY_BYTES, true);
    const plan = planChunk(index, 3, { target: early });
    const unique = [...plan.kind].filter((k) => k === TARGET).length;
    expect(unique).toBe(0);
    expect([...plan.kind].some((k) => k === FETCH)).toBe(true);
  });

  it('writes release 2 exactly from a target slot holding it at other offsets', async () => {
    const shifted = Buffer.alloc(pair.release2.length);
    pair.release2.copy(shifted, 0, CHUNK); // release 2's chunk c+1 now at chunk c: reusable only backwards
    pair.release2.copy(shifted, shifted.length - CHUNK, 0, CHUNK);
    const d = await device('order2', shifted);
    await writeFile(d.running, Buffer.alloc(pair.release1.length)); // nothing to reuse there
    const fetcher = rangeClient({ url: server.url('r2.piota'), ca: server.ca });
    await install(d, fetcher);
    fetcher.close();
    expect((await readFile(d.target)).subarray(0, pair.release2.length).equals(pair.release2)).toBe(true);
  });
});

describe('what an adaptive install refuses or gives up on', () => {
  async function tampered(name: string, at: (m: BundleManifest, index: BlockIndex) => number): Promise<string> {
    const bytes = await readFile(join(dir, 'r2.piota'));
    const { manifest } = await readBundleFileHeader(join(dir, 'r2.piota'));
    const p = manifest.payloads[0];
    const b = p.blocks!;
    const index = unpackIndex(bytes.subarray(b.offset, b.offset + b.size), { imageSize: p.imageSize, chunkSize: p.chunkSize, blockSize: b.blockSize, unitSize: b.unitSize }, 'index');
    bytes[at(manifest, index)] ^= 0x40;
    await writeFile(join(dir, name), bytes);
    server.add(name, join(dir, name));
    return server.url(name);
  }

  it('an index whose hash does not match the signed manifest is not used (IndexUntrusted: fall back)', async () => {
    const url = await tampered('bad-index.piota', (m) => m.payloads[0].blocks!.offset + 100);
    const { manifest } = await readBundleFileHeader(join(dir, 'r2.piota'));
    const fetcher = rangeClient({ url, ca: server.ca });
    await expect(fetchBlockIndex(fetcher, manifest.payloads[0])).rejects.toBeInstanceOf(IndexUntrusted);
    fetcher.close();
  });

  it('a tampered unit among the fetched ones: hashMismatch, and nothing of its chunk is written', async () => {
    // Chunk 27 (blocks 432..447) holds only release 2's new blocks, which are fetched.
    const url = await tampered('bad-unit.piota', (m, index) => unitOffsets(index, m.payloads[0], 27).offsets[0] + 30);
    const d = await device('tampered', pair.release0);
    const fetcher = rangeClient({ url, ca: server.ca });
    const err = await install(d, fetcher).catch((e: unknown) => e);
    fetcher.close();
    expect(err).toMatchObject({ code: 'hashMismatch' });
    expect((err as Error).message).toContain('chunk 27 of rootfs');
    // Chunk 27 was never written: the target still holds release 0 there.
    const at = 27 * CHUNK;
    expect((await readFile(d.target)).subarray(at, at + CHUNK).equals(pair.release0.subarray(at, at + CHUNK))).toBe(true);
  });

  it('a server that ignores Range: RangeRefused (fall back to the full download)', async () => {
    const fetcher = rangeClient({ url: server.url('r2.piota'), ca: server.ca });
    server.faults.ignoreRange = true;
    try {
      await expect(fetcher.fetch(100, 200)).rejects.toBeInstanceOf(RangeRefused);
    } finally {
      server.faults.ignoreRange = false;
      fetcher.close();
    }
  });
});
