import { createHash } from 'node:crypto';
import type { BlockIndex } from '../bundle/block-index.js';
import type { ChunkInfo, PayloadInfo } from '../bundle/manifest.js';
import type { BlockLookup } from './block-lookup.js';

/** Where each block of a chunk comes from. */
export const FETCH = 0;
export const ZERO = 1;
export const RUNNING = 2;
export const TARGET = 3;

/**
 * Fetched ranges closer than this are merged into one request: a request costs a round trip and
 * a few hundred bytes of headers, about what this many gap bytes cost (docs/adaptive-updates.md).
 */
export const MERGE_GAP = 2048;

export interface ReuseSources {
  /** The running slot: never written during an install, so any of its blocks may be read. */
  running?: BlockLookup;
  /** The slot being written: only blocks at or after the chunk being written may be read (see planChunk). */
  target?: BlockLookup;
}

export interface ChunkPlan {
  /** Per block of the chunk: FETCH, ZERO, RUNNING or TARGET. */
  kind: Uint8Array;
  /** Per block: the source slot's block number (RUNNING, TARGET). */
  from: Int32Array;
  /** Units of the payload (global unit numbers) that must be fetched, ascending. */
  fetchUnits: number[];
}

const zeroKeys = new Map<string, Buffer>();
function zeroKey(blockSize: number, lookupBytes: number): Buffer {
  const id = `${blockSize}/${lookupBytes}`;
  let k = zeroKeys.get(id);
  if (!k) zeroKeys.set(id, (k = createHash('sha256').update(Buffer.alloc(blockSize)).digest().subarray(0, lookupBytes)));
  return k;
}

/**
 * Where each block of chunk `c` (of the payload) comes from. The order rule: chunks are written in
 * ascending order, and each chunk's sources are all read before the chunk is written, so the target
 * slot's bytes from the chunk's first byte on are still the old ones; a target block before that
 * may already hold new bytes and is never used. (A resumed install keeps the rule: it restarts at a
 * chunk boundary with everything before it written and nothing after it.)
 */
export function planChunk(index: BlockIndex, c: number, sources: ReuseSources): ChunkPlan {
  const { blockSize, unitSize, chunkSize, imageSize } = index.layout;
  const start = c * chunkSize;
  const end = Math.min(imageSize, start + chunkSize);
  const firstBlock = start / blockSize;
  const blocks = Math.ceil((end - start) / blockSize);
  const kind = new Uint8Array(blocks);
  const from = new Int32Array(blocks);
  const zero = zeroKey(blockSize, index.lookupBytes);
  const fetchUnits: number[] = [];
  const lastBlockSize = imageSize - (firstBlock + blocks - 1) * blockSize;
  for (let i = 0; i < blocks; i++) {
    const key = index.key(firstBlock + i);
    // A short last block is never looked up: a slot's blocks are whole.
    if (i === blocks - 1 && lastBlockSize < blockSize) kind[i] = FETCH;
    else if (zero.equals(key)) kind[i] = ZERO;
    else {
      const r = sources.running ? sources.running.find(key) : -1;
      const t = r < 0 && sources.target ? sources.target.find(key) : -1;
      if (r >= 0) {
        kind[i] = RUNNING;
        from[i] = r;
      } else if (t >= 0 && t * blockSize >= start) {
        kind[i] = TARGET;
        from[i] = t;
      } else kind[i] = FETCH;
    }
    if (kind[i] === FETCH) {
      const unit = Math.floor((start + i * blockSize) / unitSize);
      if (fetchUnits[fetchUnits.length - 1] !== unit) fetchUnits.push(unit);
    }
  }
  return { kind, from, fetchUnits };
}

/** Where each chunk's units start in the unit store (relative to it): one number per chunk, cached per index. */
const chunkStarts = new WeakMap<BlockIndex, Float64Array>();
function chunkStoreStarts(index: BlockIndex): Float64Array {
  let starts = chunkStarts.get(index);
  if (!starts) {
    const { unitSize, chunkSize, imageSize } = index.layout;
    const perChunk = chunkSize / unitSize;
    const chunks = Math.ceil(imageSize / chunkSize);
    starts = new Float64Array(chunks + 1);
    for (let c = 0; c < chunks; c++) {
      let sum = 0;
      const end = Math.min(index.unitStored.length, (c + 1) * perChunk);
      for (let u = c * perChunk; u < end; u++) sum += index.unitStored[u];
      starts[c + 1] = starts[c] + sum;
    }
    chunkStarts.set(index, starts);
  }
  return starts;
}

/** Bundle offset of every unit of chunk `c` of the payload, and of its end: offsets[u - firstUnit]. */
export function unitOffsets(index: BlockIndex, payload: PayloadInfo, c: number): { firstUnit: number; offsets: Float64Array } {
  const { unitSize, chunkSize, imageSize } = index.layout;
  const firstUnit = (c * chunkSize) / unitSize;
  const count = Math.ceil((Math.min(imageSize, (c + 1) * chunkSize) - c * chunkSize) / unitSize);
  const offsets = new Float64Array(count + 1);
  offsets[0] = payload.blocks!.storeOffset + chunkStoreStarts(index)[c];
  for (let u = 0; u < count; u++) offsets[u + 1] = offsets[u] + index.unitStored[firstUnit + u];
  return { firstUnit, offsets };
}

export interface FetchRange {
  start: number;
  end: number;
  /** Global unit numbers inside, ascending. */
  units: number[];
}

/** The units' stored bytes as Range requests, neighbours closer than `gap` merged. */
export function mergeRanges(units: number[], firstUnit: number, offsets: Float64Array, gap = MERGE_GAP): FetchRange[] {
  const ranges: FetchRange[] = [];
  for (const u of units) {
    const start = offsets[u - firstUnit];
    const end = offsets[u - firstUnit + 1];
    const last = ranges[ranges.length - 1];
    if (last && start - last.end <= gap) {
      last.end = end;
      last.units.push(u);
    } else ranges.push({ start, end, units: [u] });
  }
  return ranges;
}

export interface Prediction {
  /** Stored bytes of the units to fetch, plus the gaps merged into their ranges. */
  fetchBytes: number;
  /** Range requests. */
  requests: number;
  /** Image bytes taken from the slots (or known zeros). */
  reusedBytes: number;
  zeroBytes: number;
}

/** What an install of this payload would fetch and reuse (no I/O: the lookups only). */
export function predict(index: BlockIndex, payload: PayloadInfo, chunks: ChunkInfo[], sources: ReuseSources, fromChunk = 0): Prediction {
  const p: Prediction = { fetchBytes: 0, requests: 0, reusedBytes: 0, zeroBytes: 0 };
  const { blockSize } = index.layout;
  for (let c = fromChunk; c < chunks.length; c++) {
    const plan = planChunk(index, c, sources);
    const { firstUnit, offsets } = unitOffsets(index, payload, c);
    for (const r of mergeRanges(plan.fetchUnits, firstUnit, offsets)) {
      p.fetchBytes += r.end - r.start;
      p.requests++;
    }
    const last = Math.min(blockSize, chunks[c].imageSize - (plan.kind.length - 1) * blockSize);
    plan.kind.forEach((k, i) => {
      const size = i === plan.kind.length - 1 ? last : blockSize;
      if (k === RUNNING || k === TARGET) p.reusedBytes += size;
      if (k === ZERO) p.zeroBytes += size;
    });
  }
  return p;
}
