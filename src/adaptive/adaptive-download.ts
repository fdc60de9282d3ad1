import { join } from 'node:path';
import type { Logger } from 'pino';
import type { VerifiedHeader } from '../bundle/verifier.js';
import { BlockLookup } from './block-lookup.js';
import { IndexUntrusted, fetchBlockIndex, installAdaptive, type AdaptiveStats, type PayloadTarget } from './install.js';
import { predict } from './plan.js';
import { RangeRefused, rangeClient, type RangeFetcher } from './range-client.js';
import { KEY_BYTES, buildSlotIndex, loadSlotIndex, saveSlotIndex, type SlotIndex } from './slot-index.js';
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
  /** Downloads go through a proxy: the Range client does not, so the full download runs. */
  proxy?: boolean;
  /** Called once the adaptive install is decided, before its first write: the caller closes its full download stream. */
  onCommit?: () => void;
}

export function slotIndexPath(stateDir: string, slot: string, payload: string): string {
  return join(stateDir, 'slot-index', `${slot}-${payload}.bin`);
}

const building = new Map<string, Promise<void>>();

/**
 * Builds and saves the index of a slot's partition unless one is being built; paced so the device
 * stays responsive. The daemon calls it after a commit (idle time) for the committed slot; the
 * download calls it when the running slot has none, so it is built during that full download.
 */
export function buildSlotIndexInBackground(stateDir: string, slot: string, payload: string, device: string, size: number, bytesPerSecond: number, logger: Pick<Logger, 'info' | 'warn'>): Promise<void> {
  const path = slotIndexPath(stateDir, slot, payload);
  const running = building.get(path);
  if (running) return running;
  const job = (async () => {
    const started = Date.now();
    const index = await buildSlotIndex(device, size, { bytesPerSecond });
    await saveSlotIndex(path, index);
    logger.info({ slot, payload, ms: Date.now() - started }, 'slot index built');
  })()
    .catch((err: unknown) => logger.warn({ err, slot, payload }, 'slot index build failed; adaptive updates wait for the next one'))
    .finally(() => building.delete(path));
  building.set(path, job);
  return job;
}

export async function tryAdaptiveDownload(ctx: AdaptiveContext): Promise<AdaptiveStats | null> {
  const { manifest } = ctx.header;
  if (manifest.payloads.some((p) => !p.blocks)) return null;
  if (ctx.proxy) {
    ctx.logger.info({}, 'downloads go through a proxy, which adaptive downloads do not use yet: full download');
    return null;
  }
  const runningIndexes = new Map<string, SlotIndex>();
  for (const p of manifest.payloads) {
    const index = await loadSlotIndex(slotIndexPath(ctx.stateDir, ctx.runningSlot, p.name));
    const device = ctx.runningPartitions[p.name];
    if (!index || index.blockSize !== p.blocks!.blockSize) {
      if (device) void buildSlotIndexInBackground(ctx.stateDir, ctx.runningSlot, p.name, device, p.imageSize, ctx.indexBytesPerSecond ?? 64 * 1024 * 1024, ctx.logger);
      ctx.logger.info({ payload: p.name }, 'no index of the running slot yet: full download (the index is built meanwhile)');
      return null;
    }
    runningIndexes.set(p.name, index);
  }
  // The index of the slot being written (built when it last ran) may be stale in places: reused
  // blocks are hashed again as they are read, so staleness costs fetches, never a wrong byte.
  const targetIndexes = new Map<string, SlotIndex | null>();
  for (const p of manifest.payloads) targetIndexes.set(p.name, await loadSlotIndex(slotIndexPath(ctx.stateDir, ctx.targetSlot, p.name)));

  let fetcher: RangeFetcher | undefined;
  const closers: (() => Promise<void>)[] = [];
  try {
    fetcher = rangeClient({ url: ctx.url, ca: ctx.ca, validator: ctx.validator });
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
      const targetReader = sources.target ? await openSlotReader(ctx.targetPartitions[p.name]) : undefined;
      if (targetReader) closers.push(targetReader.close);
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
