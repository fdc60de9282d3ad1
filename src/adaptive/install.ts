import { createHash } from 'node:crypto';
import { expandUnit, unpackIndex, type BlockIndex } from '../bundle/block-index.js';
import { expandChunk } from '../bundle/compression.js';
import { BundleError } from '../bundle/errors.js';
import type { BundleManifest, ChunkInfo, PayloadInfo } from '../bundle/manifest.js';
import { AlignedBufferPool, allocAligned } from '../slots/aligned-buffer.js';
import { BlockChecker } from './block-checker.js';
import { FETCH, RUNNING, ZERO, mergeRanges, type ReuseSources } from './plan.js';
import type { RangeFetcher } from './range-client.js';
import { UnitPrefetch, type PlannedChunk } from './unit-prefetch.js';
/** The index could not be trusted (its hash does not match the signed manifest): fall back to the full download. */
export class IndexUntrusted extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IndexUntrusted';
  }
}

/** Fetches a payload's block index by Range and checks it against the signed manifest before decoding it. */
export async function fetchBlockIndex(fetcher: RangeFetcher, payload: PayloadInfo, signal?: AbortSignal): Promise<BlockIndex> {
  const b = payload.blocks;
  if (!b) throw new IndexUntrusted(`the ${payload.name} payload has no block index (format 1)`);
  const bytes = await fetcher.fetch(b.offset, b.offset + b.size, signal);
  const digest = createHash('sha256').update(bytes).digest('hex');
  if (digest !== b.sha256) throw new IndexUntrusted(`the block index of ${payload.name} has sha256 ${digest}, the signed manifest says ${b.sha256}`);
  const layout = { imageSize: payload.imageSize, chunkSize: payload.chunkSize, blockSize: b.blockSize, unitSize: b.unitSize };
  return unpackIndex(bytes, layout, `the block index of ${payload.name}`);
}

/** Reads bytes of a slot that blocks are reused from. */
export interface SlotReader {
  /** Reads `length` bytes of the slot at `position` into `into` at `at`; bytes past the slot's end read as zeros. */
  readInto(into: Uint8Array, at: number, length: number, position: number): Promise<void>;
}

export interface PayloadTarget {
  payload: PayloadInfo;
  index: BlockIndex;
  sources: ReuseSources;
  running?: SlotReader;
  target?: SlotReader;
  write(imageOffset: number, data: Buffer): Promise<void>;
}

export interface AdaptiveStats {
  bytesFetched: number;
  bytesReused: number;
  /** Blocks an index promised that were no longer there (stale index): fetched instead. */
  staleBlocks: number;
  /** Chunks whose assembled bytes missed the signed chunk hash and were fetched whole. */
  refetchedChunks: number;
  /** Chunks of zeros that the target slot already held (free space in both releases): not written again. */
  chunksInPlace: number;
}

export interface AdaptiveInstall {
  manifest: BundleManifest;
  payloads: Map<string, PayloadTarget>;
  fetcher: RangeFetcher;
  fromChunk: number;
  /** Called after each chunk is written (global chunk index): the caller syncs and persists at its pace. */
  afterChunk(chunk: number, stats: AdaptiveStats): Promise<void>;
  signal?: AbortSignal;
}

/**
 * Chunks assembled (read, fetched, checked) ahead of the one being written. The order rule still
 * holds: chunk k reads target bytes only from its own first byte on, and the writes in flight are
 * of chunks before k, which end before that byte.
 */
const ASSEMBLE_AHEAD = 2;

/** A chunk ready to be written: every byte checked against the signed manifest. */
interface Assembled {
  data: Buffer;
  /** The target slot already holds exactly `data` where it goes (compared byte for byte): no write. */
  inPlace?: boolean;
  reused: number;
  release(): void;
}

/**
 * Writes chunks `fromChunk`.. of every payload, each assembled from reused blocks (each hashed again
 * against its index key) and fetched units (each checked against the signed index as it is
 * expanded), and written only once the whole chunk matches its signed image sha256. Chunks are
 * written in ascending order (planChunk's order rule); the next few are assembled meanwhile, their
 * hashing on a worker thread (BlockChecker), into aligned buffers that the writer sends with O_DIRECT.
 */
export async function installAdaptive(job: AdaptiveInstall): Promise<AdaptiveStats> {
  const stats: AdaptiveStats = { bytesFetched: 0, bytesReused: 0, staleBlocks: 0, refetchedChunks: 0, chunksInPlace: 0 };
  const fetchedBefore = job.fetcher.bytesFetched;
  const { chunks } = job.manifest;
  const prefetch = new UnitPrefetch({ chunks, payloads: job.payloads, fetcher: job.fetcher, signal: job.signal }, job.fromChunk);
  const checker = new BlockChecker();
  const pools = new Map<number, AlignedBufferPool>();
  const poolFor = (size: number) => pools.get(size) ?? pools.set(size, new AlignedBufferPool(size, true)).get(size)!;
  const ctx: AssemblyContext = { job, stats, checker, poolFor };
  const assembling: Promise<Assembled>[] = [];
  try {
    for (let g = job.fromChunk; g < chunks.length; g++) {
      while (assembling.length < ASSEMBLE_AHEAD) {
        const w = prefetch.take();
        if (!w) break;
        const a = assembleChunk(ctx, w).finally(() => prefetch.done(w));
        a.catch(() => undefined); // awaited in order below
        assembling.push(a);
      }
      job.signal?.throwIfAborted();
      const a = await assembling.shift()!;
      const chunk = chunks[g];
      if (a.inPlace) stats.chunksInPlace++;
      else await job.payloads.get(chunk.payload)!.write(chunk.imageOffset, a.data);
      a.release();
      stats.bytesReused += a.reused;
      stats.bytesFetched = job.fetcher.bytesFetched - fetchedBefore;
      await job.afterChunk(g, stats);
    }
    return stats;
  } finally {
    // Nothing of a stopped install may go on reading into buffers or fetching after it returns.
    await Promise.allSettled(assembling);
    await checker.close();
  }
}

interface AssemblyContext {
  job: AdaptiveInstall;
  stats: AdaptiveStats;
  checker: BlockChecker;
  poolFor(size: number): AlignedBufferPool;
}

/** An aligned chunk of zeros per size, never written to, and its sha256: a chunk that is all zero blocks is this. */
const zeroChunks = new Map<number, { data: Buffer; sha256: Buffer }>();
function zeroChunk(size: number): { data: Buffer; sha256: Buffer } {
  let z = zeroChunks.get(size);
  if (!z) {
    const data = allocAligned(size);
    zeroChunks.set(size, (z = { data, sha256: createHash('sha256').update(data).digest() }));
  }
  return z;
}

async function assembleChunk(ctx: AssemblyContext, w: PlannedChunk): Promise<Assembled> {
  const { job } = ctx;
  const t = job.payloads.get(w.chunk.payload)!;
  const { index } = t;
  const { blockSize } = index.layout;
  const { plan, chunk } = w;
  const signed = Buffer.from(index.chunkImageSha256.buffer, index.chunkImageSha256.byteOffset + w.c * 32, 32);
  const firstBlock = chunk.imageOffset / blockSize;
  const n = plan.kind.length;

  // Free space: a chunk of zero blocks only is the shared zero chunk, whose hash is known. Its
  // signed hash is still checked; a key that only looked like the zero block's fails it.
  if (plan.kind.every((k) => k === ZERO)) {
    await w.fetched;
    const z = zeroChunk(chunk.imageSize);
    if (!z.sha256.equals(signed)) return refetched(ctx, t, chunk);
    return { data: z.data, reused: 0, inPlace: await holdsAlready(ctx, t, chunk, z.data), release: () => undefined };
  }

  const pool = ctx.poolFor(t.payload.chunkSize);
  const data = pool.take(chunk.imageSize);
  let handedOver = false;
  try {
    // Reused blocks, read straight into the chunk in runs of neighbouring source blocks; zero
    // blocks filled. (The buffer is reused: every byte is set below.)
    const reads: Promise<void>[] = [];
    const checked: number[] = [];
    for (let i = 0; i < n; ) {
      const k = plan.kind[i];
      let run = 1;
      if (k === FETCH) {
        i++;
        continue;
      }
      if (k === ZERO) {
        while (i + run < n && plan.kind[i + run] === ZERO) run++;
        data.fill(0, i * blockSize, Math.min(chunk.imageSize, (i + run) * blockSize));
      } else {
        while (i + run < n && plan.kind[i + run] === k && plan.from[i + run] === plan.from[i] + run) run++;
        const reader = k === RUNNING ? t.running : t.target;
        if (!reader) throw new Error(`the plan reuses blocks of a slot with no reader (kind ${k})`);
        reads.push(reader.readInto(data, i * blockSize, run * blockSize, plan.from[i] * blockSize));
        for (let j = 0; j < run; j++) checked.push(i + j);
      }
      i += run;
    }
    const fetchedUnits = new Set<number>();
    // Every read settled before the buffer can go back to the pool, even when one failed.
    const [fetched, ...read] = await Promise.allSettled([w.fetched, ...reads]);
    for (const r of [fetched, ...read]) if (r.status === 'rejected') throw r.reason;
    const ranges = (fetched as PromiseFulfilledResult<Buffer[]>).value;
    w.ranges.forEach((r, at) => applyUnits(t, chunk, r.units, ranges[at], r.start, w.firstUnit, w.offsets, data, fetchedUnits));

    // Each reused block hashed again against its key (a stale index costs a fetch, never a wrong
    // byte), then the whole chunk against its signed sha256: on the checker's thread.
    const blocks = Int32Array.from(checked);
    const keys = new Uint8Array(blocks.length * index.lookupBytes);
    blocks.forEach((b, at) => keys.set(index.key(firstBlock + b), at * index.lookupBytes));
    let result = await ctx.checker.check(data, blockSize, blocks, keys, index.lookupBytes);
    if (result.bad.length > 0) {
      ctx.stats.staleBlocks += result.bad.length;
      const stale = [...new Set(result.bad.map((b) => Math.floor((chunk.imageOffset + b * blockSize) / index.layout.unitSize)))];
      for (const r of mergeRanges(stale, w.firstUnit, w.offsets)) {
        applyUnits(t, chunk, r.units, await job.fetcher.fetch(r.start, r.end, job.signal), r.start, w.firstUnit, w.offsets, data, fetchedUnits);
      }
      result = await ctx.checker.check(data, blockSize, new Int32Array(0), new Uint8Array(0), index.lookupBytes);
    }
    if (result.sha256 && result.sha256.equals(signed)) {
      // Reused: the checked blocks that no fetched unit replaced (a unit larger than a block covers
      // its neighbours too; those bytes are the unit's, checked as it was expanded).
      const unitOf = (b: number) => Math.floor((chunk.imageOffset + b * blockSize) / index.layout.unitSize);
      const reused = checked.filter((b) => !fetchedUnits.has(unitOf(b))).length * blockSize;
      handedOver = true;
      return { data, reused, release: () => pool.give(data) };
    }
  } finally {
    if (!handedOver) pool.give(data);
  }
  // A lookup key matched a different block (or a reused block changed between its check and the
  // chunk's hash): take the chunk whole, checked against its signed stored hash like a full install.
  return refetched(ctx, t, chunk);
}

/**
 * Whether the target slot already holds `data` at the chunk's place. Nothing but this chunk writes
 * there, so what is read now is what stays; a flash medium reads far faster than it writes, and
 * free space is most of a root image.
 */
async function holdsAlready(ctx: AssemblyContext, t: PayloadTarget, chunk: ChunkInfo, data: Buffer): Promise<boolean> {
  if (!t.target) return false;
  const pool = ctx.poolFor(t.payload.chunkSize);
  const there = pool.take(chunk.imageSize);
  try {
    await t.target.readInto(there, 0, chunk.imageSize, chunk.imageOffset);
    return there.equals(data);
  } finally {
    pool.give(there);
  }
}

async function refetched(ctx: AssemblyContext, t: PayloadTarget, chunk: ChunkInfo): Promise<Assembled> {
  ctx.stats.refetchedChunks++;
  return { data: await fetchWholeChunk(ctx.job, t, chunk), reused: 0, release: () => undefined };
}

/** Expands the fetched units of `range` into the chunk, each block checked against the signed index first. */
function applyUnits(
  t: PayloadTarget,
  chunk: ChunkInfo,
  units: number[],
  bytes: Buffer,
  rangeStart: number,
  firstUnit: number,
  offsets: Float64Array,
  image: Buffer,
  done: Set<number>,
): void {
  const { index } = t;
  const { blockSize, unitSize } = index.layout;
  for (const u of units) {
    const local = u - firstUnit;
    const stored = bytes.subarray(offsets[local] - rangeStart, offsets[local + 1] - rangeStart);
    const unitStart = local * unitSize;
    const size = Math.min(unitSize, chunk.imageSize - unitStart);
    const where = `unit ${local} of chunk ${chunk.index} of ${chunk.payload} (bundle bytes ${offsets[local]}..${offsets[local + 1]})`;
    let data: Buffer;
    try {
      data = expandUnit(stored, size);
    } catch (err) {
      throw new BundleError('hashMismatch', `${where}: ${(err as Error).message}`);
    }
    // Each block against the signed index now: a tampered unit is refused before it is used.
    for (let b = 0; b < size; b += blockSize) {
      const blockNo = (chunk.imageOffset + unitStart + b) / blockSize;
      if (!sameKey(data.subarray(b, b + blockSize), index.key(blockNo))) {
        throw new BundleError('hashMismatch', `${where} does not match the signed block index`);
      }
    }
    data.copy(image, unitStart);
    done.add(u);
  }
}

async function fetchWholeChunk(job: AdaptiveInstall, t: PayloadTarget, chunk: ChunkInfo): Promise<Buffer> {
  const stored = await job.fetcher.fetch(chunk.bundleOffset, chunk.bundleOffset + chunk.storedSize, job.signal);
  const digest = createHash('sha256').update(stored).digest('hex');
  if (digest !== chunk.sha256) {
    throw new BundleError('hashMismatch', `chunk ${chunk.index} of ${chunk.payload} (bundle bytes ${chunk.bundleOffset}..${chunk.bundleOffset + chunk.storedSize}) has sha256 ${digest}, the signed manifest says ${chunk.sha256}`);
  }
  return expandChunk(t.payload.compression, stored, chunk.imageSize);
}

function sameKey(block: Uint8Array, key: Uint8Array): boolean {
  return createHash('sha256').update(block).digest().subarray(0, key.length).equals(key);
}
