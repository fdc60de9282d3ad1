import type { BlockIndex } from '../bundle/block-index.js';
import type { ChunkInfo, PayloadInfo } from '../bundle/manifest.js';
import { mergeRanges, planChunk, unitOffsets, type ChunkPlan, type FetchRange, type ReuseSources } from './plan.js';
import type { RangeFetcher } from './range-client.js';

/** One chunk, planned, with the Range requests of the units it lacks under way. */
export interface PlannedChunk {
  /** Global chunk number. */
  g: number;
  /** Chunk number within its payload. */
  c: number;
  chunk: ChunkInfo;
  plan: ChunkPlan;
  firstUnit: number;
  offsets: Float64Array;
  ranges: FetchRange[];
  /** The ranges' bytes, in the order of `ranges`. */
  fetched: Promise<Buffer[]>;
  /** Stored bytes of the ranges (what this chunk holds of the prefetch budget). */
  bytes: number;
}

export interface PrefetchSource {
  chunks: ChunkInfo[];
  /** Per payload name: its index, its sources and its info. */
  payloads: Map<string, { payload: PayloadInfo; index: BlockIndex; sources: ReuseSources }>;
  fetcher: RangeFetcher;
  signal?: AbortSignal;
}

/** Chunks planned ahead of the one being assembled, at most. */
const AHEAD_CHUNKS = 64;
/** Stored unit bytes fetched (or being fetched) ahead and not yet used, at most (one chunk's always goes). */
const AHEAD_BYTES = 8 * 1024 * 1024;

/**
 * Plans the chunks in order and starts their Range requests ahead of the assembly, so the link
 * stays busy while chunks made only of reused blocks are assembled and written (the range client
 * keeps its few connections full, first come first served). Bounded by AHEAD_CHUNKS plans and
 * AHEAD_BYTES of fetched units not yet used.
 */
export class UnitPrefetch {
  private readonly queue: PlannedChunk[] = [];
  private held = 0;

  constructor(
    private readonly src: PrefetchSource,
    private next: number,
  ) {}

  /** The next chunk in order (its fetches started); hand it back with done() once assembled. */
  take(): PlannedChunk | undefined {
    this.fill();
    const w = this.queue.shift();
    this.fill();
    return w;
  }

  /** The chunk's fetched bytes are no longer held: plan further. */
  done(w: PlannedChunk): void {
    this.held -= w.bytes;
    this.fill();
  }

  private fill(): void {
    const { chunks, payloads, fetcher, signal } = this.src;
    while (this.next < chunks.length && this.queue.length < AHEAD_CHUNKS && (this.held < AHEAD_BYTES || this.queue.length === 0)) {
      const g = this.next++;
      const chunk = chunks[g];
      const p = payloads.get(chunk.payload)!;
      const c = g - p.payload.firstChunk;
      const plan = planChunk(p.index, c, p.sources);
      const { firstUnit, offsets } = unitOffsets(p.index, p.payload, c);
      const ranges = mergeRanges(plan.fetchUnits, firstUnit, offsets);
      const fetched = Promise.all(ranges.map((r) => fetcher.fetch(r.start, r.end, signal)));
      // Awaited by the assembly; a failure before then (the install stopped) must not go unhandled.
      fetched.catch(() => undefined);
      const bytes = ranges.reduce((sum, r) => sum + r.end - r.start, 0);
      this.held += bytes;
      this.queue.push({ g, c, chunk, plan, firstUnit, offsets, ranges, fetched, bytes });
    }
  }
}
