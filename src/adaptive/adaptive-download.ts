import type { Logger } from 'pino';
import type { VerifiedHeader } from '../bundle/verifier.js';
import type { ProxySetting } from '../download/proxy.js';
import { BlockLookup } from './block-lookup.js';
import { IndexUntrusted, fetchBlockIndex, installAdaptive, type AdaptiveStats, type PayloadTarget } from './install.js';
import { predict } from './plan.js';
import { RangeRefused, rangeClient, type RangeFetcher } from './range-client.js';
import { KEY_BYTES, loadSlotIndex, type SlotIndex } from './slot-index.js';
import { buildSlotIndexInBackground, dropSlotIndexes, slotIndexPath } from './slot-index-builds.js';
import { openSlotReader } from './slot-reader.js';

/**
 * The daemon's entry into adaptive updates: called by the download once the bundle's header is
 * verified. Returns the stats of a finished adaptive install, or null when the full download should
 * run instead (format 1, no slot index yet, a server without Range, an index that does not match its
 * signed hash, or reuse that would not save enough). Errors after the first chunk was written
 * (hashMismatch, a network failure) are thrown like the full download's.
 */
export interface AdaptiveContext {
  url: string;
  ca?: string;
  /** The bundle's validator from the first response (If-Range on every range). */
  validator: string | null;
  header: VerifiedHeader;
  /** Partition paths of the running slot and of the slot being written, by payload name. */
  runningPartitions: Record<string, string>;
  targetPartitions: Record<string, string>;
  /** Names of the running and target slots ('A', 'B'): the slot indexes are kept per slot. */
  runningSlot: string;
  targetSlot: string;
  stateDir: string;
  fromChunk: number;
  write(payload: string, imageOffset: number, data: Buffer): Promise<void>;
  afterChunk(chunk: number, stats: AdaptiveStats): Promise<void>;
  logger: Pick<Logger, 'info' | 'warn'>;
  signal?: AbortSignal;
  /** Fall back when the units to fetch exceed this share of the chunks (default 0.75). */
  maxShare?: number;
  /** Pace of a slot index built because none was there (bytes/s; default 64 MiB/s). */
  indexBytesPerSecond?: number;
  /** The download's proxy setting (a URL, null for none, undefined for the environment's): the ranges go the same way. */
  proxy?: ProxySetting;
  /** Called once the adaptive install is decided, before its first write: the caller closes its full download stream. */
  onCommit?: () => void;
}

export { buildSlotIndexInBackground, slotIndexPath } from './slot-index-builds.js';

/**
 * Pace of an index of the running slot built during a full download because none was there: the
 * idle build's default pace, so that the build (sha256 of every block, on the main thread) takes a
 * few percent of it and the install stays as fast as a full one; what is left of the build goes on
 * after the download.
 */
const DOWNLOAD_INDEX_PACE = 16 * 1024 * 1024;

export async function tryAdaptiveDownload(ctx: AdaptiveContext): Promise<AdaptiveStats | null> {
  const { manifest } = ctx.header;
  // The slot being written: its index, if any, is read now (its blocks may be reused below, each
  // hashed again as it is read) and its file dropped, so that after this update no index describes
  // the release it held before. A fresh one is built once the new release is committed.
  const format2 = manifest.payloads.every((p) => p.blocks);
  const targetIndexes = new Map<string, SlotIndex | null>();
  if (format2) for (const p of manifest.payloads) targetIndexes.set(p.name, await loadSlotIndex(slotIndexPath(ctx.stateDir, ctx.targetSlot, p.name)));
  await dropSlotIndexes(ctx.stateDir, ctx.targetSlot);
  if (!format2) return null;
  const runningIndexes = new Map<string, SlotIndex>();
  for (const p of manifest.payloads) {
    const index = await loadSlotIndex(slotIndexPath(ctx.stateDir, ctx.runningSlot, p.name));
    const device = ctx.runningPartitions[p.name];
    if (!index || index.blockSize !== p.blocks!.blockSize) {
      if (device) void buildSlotIndexInBackground(ctx.stateDir, ctx.runningSlot, p.name, device, p.imageSize, ctx.indexBytesPerSecond ?? DOWNLOAD_INDEX_PACE, ctx.logger, { blockSize: p.blocks!.blockSize });
      ctx.logger.info({ payload: p.name }, 'no index of the running slot yet: full download (the index is built meanwhile)');
      return null;
    }
    runningIndexes.set(p.name, index);
  }

  let fetcher: RangeFetcher | undefined;
  const closers: (() => Promise<void>)[] = [];
  try {
    fetcher = rangeClient({ url: ctx.url, ca: ctx.ca, proxy: ctx.proxy, validator: ctx.validator });
    const targets = new Map<string, PayloadTarget>();
    let fetchBytes = 0;
    let fullBytes = 0;
    for (const p of manifest.payloads) {
      const index = await fetchBlockIndex(fetcher, p, ctx.signal);
      const running = runningIndexes.get(p.name)!;
      const target = targetIndexes.get(p.name);
      const sources = {
        running: new BlockLookup(running.keys, KEY_BYTES),
        target: target && target.blockSize === p.blocks!.blockSize ? new BlockLookup(target.keys, KEY_BYTES, true) : undefined,
      };
      const chunks = manifest.chunks.slice(p.firstChunk, p.firstChunk + p.chunkCount);
      const from = Math.max(0, ctx.fromChunk - p.firstChunk);
      fetchBytes += predict(index, p, chunks, sources, from).fetchBytes;
      fullBytes += chunks.slice(from).reduce((sum, c) => sum + c.storedSize, 0);
      const runningReader = await openSlotReader(ctx.runningPartitions[p.name]);
      closers.push(runningReader.close);
      // Read even without an index of it: a chunk of zeros that the target already holds is not written again.
      const targetReader = await openSlotReader(ctx.targetPartitions[p.name]);
      closers.push(targetReader.close);
      targets.set(p.name, { payload: p, index, sources, running: runningReader, target: targetReader, write: (offset, data) => ctx.write(p.name, offset, data) });
    }
    if (fetchBytes > (ctx.maxShare ?? 0.75) * fullBytes) {
      ctx.logger.info({ fetchBytes, fullBytes }, 'adaptive download would not save enough: full download');
      return null;
    }
    ctx.logger.info({ fetchBytes, fullBytes, fromChunk: ctx.fromChunk }, 'adaptive download');
    ctx.onCommit?.();
    return await installAdaptive({ manifest, payloads: targets, fetcher, fromChunk: ctx.fromChunk, afterChunk: ctx.afterChunk, signal: ctx.signal });
  } catch (err) {
    if (err instanceof RangeRefused || err instanceof IndexUntrusted) {
      ctx.logger.warn({ reason: err.message }, 'adaptive download not possible: full download');
      return null;
    }
    throw err;
  } finally {
    fetcher?.close();
    for (const close of closers) await close().catch(() => undefined);
  }
}
