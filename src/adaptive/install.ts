import { createHash } from 'node:crypto';
import { expandUnit, unpackIndex, type BlockIndex } from '../bundle/block-index.js';
import { expandChunk } from '../bundle/compression.js';
import { BundleError } from '../bundle/errors.js';
import type { BundleManifest, ChunkInfo, PayloadInfo } from '../bundle/manifest.js';
import { FETCH, RUNNING, ZERO, mergeRanges, planChunk, unitOffsets, type FetchRange, type ReuseSources } from './plan.js';
import type { RangeFetcher } from './range-client.js';

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
  read(offset: number, length: number): Promise<Buffer>;
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

/** Range requests in flight at once. */
const PARALLEL = 4;

/**
 * Writes chunks `fromChunk`.. of every payload, each assembled from reused blocks (each hashed again
 * as it is read) and fetched units (each checked against the signed index as it is expanded), and
 * written only once the whole chunk matches its signed image sha256. Chunks go in ascending order
 * (planChunk's order rule).
 */
export async function installAdaptive(job: AdaptiveInstall): Promise<AdaptiveStats> {
  const stats: AdaptiveStats = { bytesFetched: 0, bytesReused: 0, staleBlocks: 0, refetchedChunks: 0 };
  const fetchedBefore = job.fetcher.bytesFetched;
  for (let g = job.fromChunk; g < job.manifest.chunks.length; g++) {
    job.signal?.throwIfAborted();
    const chunk = job.manifest.chunks[g];
    const t = job.payloads.get(chunk.payload)!;
    const image = await assembleChunk(job, t, chunk, g - t.payload.firstChunk, stats);
    await t.write(chunk.imageOffset, image);
    stats.bytesFetched = job.fetcher.bytesFetched - fetchedBefore;
    await job.afterChunk(g, stats);
  }
  return stats;
}

async function assembleChunk(job: AdaptiveInstall, t: PayloadTarget, chunk: ChunkInfo, c: number, stats: AdaptiveStats): Promise<Buffer> {
  const { index } = t;
  const { blockSize } = index.layout;
  const plan = planChunk(index, c, t.sources);
  const image = Buffer.alloc(chunk.imageSize);
  const firstBlock = chunk.imageOffset / blockSize;
  const { firstUnit, offsets } = unitOffsets(index, t.payload, c);
  const fetched = new Set<number>();
  const fetchUnits = async (units: number[]): Promise<void> => {
    const todo = units.filter((u) => !fetched.has(u));
    todo.forEach((u) => fetched.add(u));
    await inParallel(mergeRanges(todo, firstUnit, offsets), (r) => fetchRange(job, t, chunk, r, firstUnit, offsets, image));
  };
  await fetchUnits(plan.fetchUnits);

  // Reused blocks, read in runs of neighbouring source blocks; each hashed again before use.
  const stale: number[] = [];
  let reused = 0;
  for (let i = 0; i < plan.kind.length; ) {
    const k = plan.kind[i];
    if (k === FETCH || k === ZERO) {
      i++;
      continue;
    }
    let n = 1;
    while (i + n < plan.kind.length && plan.kind[i + n] === k && plan.from[i + n] === plan.from[i] + n) n++;
    const reader = k === RUNNING ? t.running : t.target;
    const bytes = reader ? await reader.read(plan.from[i] * blockSize, n * blockSize) : Buffer.alloc(0);
    for (let j = 0; j < n; j++) {
      const block = bytes.subarray(j * blockSize, (j + 1) * blockSize);
      const key = index.key(firstBlock + i + j);
      if (block.length === blockSize && sameKey(block, key)) {
        block.copy(image, (i + j) * blockSize);
        reused += blockSize;
      } else stale.push(Math.floor((chunk.imageOffset + (i + j) * blockSize) / index.layout.unitSize));
    }
    i += n;
  }
  if (stale.length > 0) {
    stats.staleBlocks += stale.length;
    await fetchUnits([...new Set(stale)]);
  }
  // ZERO blocks are already zero in `image`.

  const digest = createHash('sha256').update(image).digest();
  if (digest.equals(index.chunkImageSha256.subarray(c * 32, c * 32 + 32))) {
    stats.bytesReused += reused;
    return image;
  }
  // A lookup key matched a different block (or a reused block changed between its read and its
  // hash): take the chunk whole, checked against its signed stored hash like a full install.
  stats.refetchedChunks++;
  return fetchWholeChunk(job, t, chunk);
}

async function fetchRange(
  job: AdaptiveInstall,
  t: PayloadTarget,
  chunk: ChunkInfo,
  r: FetchRange,
  firstUnit: number,
  offsets: Float64Array,
  image: Buffer,
): Promise<void> {
  const bytes = await job.fetcher.fetch(r.start, r.end, job.signal);
  const { index } = t;
  const { blockSize, unitSize } = index.layout;
  for (const u of r.units) {
    const local = u - firstUnit;
    const stored = bytes.subarray(offsets[local] - r.start, offsets[local + 1] - r.start);
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

async function inParallel<T>(items: T[], work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await work(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, items.length) }, worker));
}
