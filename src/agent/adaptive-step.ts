import type { Logger } from 'pino';
import { tryAdaptiveDownload } from '../adaptive/adaptive-download.js';
import type { VerifiedHeader } from '../bundle/verifier.js';
import type { ProxySetting } from '../download/proxy.js';
import type { SlotPartitions } from './config.js';
import type { UpdateRecord } from './device-state.js';
import type { SlotWriter } from './ports.js';

/** What the download needs besides its own deps to try an adaptive install (docs/adaptive-updates.md). */
export interface AdaptiveDeps {
  /** The partitions of the running slot, whose blocks are reused. */
  runningPartitions: SlotPartitions;
  runningSlot: string;
  targetSlot: string;
  /** Where the slot indexes are kept (`<stateDir>/slot-index/`). */
  stateDir: string;
}

export interface AdaptiveStepDeps {
  adaptive: AdaptiveDeps;
  targetPartitions: SlotPartitions;
  ca?: string;
  /** The download's own request options: the ranges go through its proxy setting (null: none; undefined: HTTPS_PROXY / NO_PROXY). */
  request: { proxy?: ProxySetting };
  logger: Logger;
  checkpoint: (update: UpdateRecord) => Promise<void>;
  progress: (update: UpdateRecord) => void;
  signal: AbortSignal;
  checkpointIntervalMs?: number;
  /** The adaptive install is decided: close the full download's stream (see tryAdaptiveDownload). */
  onCommit: () => void;
}

/**
 * The download's one dispatch into adaptive updates, once the header is verified and the writers
 * are open. True: every chunk from `update.nextChunk` on is written and synced, and the record says
 * so. False: the full download runs, from `update.nextChunk` (which the adaptive install may have
 * moved forward before it fell back). Progress is persisted like the full download's: after a sync,
 * at most every `checkpointIntervalMs`, so a power cut loses at most the chunks since then.
 */
export async function downloadAdaptively(
  update: UpdateRecord,
  header: VerifiedHeader,
  validator: string | null,
  writers: Map<string, SlotWriter>,
  deps: AdaptiveStepDeps,
): Promise<boolean> {
  const interval = deps.checkpointIntervalMs ?? 2000;
  const fetchedBefore = update.bytesFetched ?? 0;
  const reusedBefore = update.bytesReused ?? 0;
  let lastCheckpoint = Date.now();
  const { chunks } = header.manifest;
  const stats = await tryAdaptiveDownload({
    url: update.fwPackageUri,
    ca: deps.ca,
    proxy: deps.request.proxy,
    validator,
    header,
    runningPartitions: deps.adaptive.runningPartitions,
    targetPartitions: deps.targetPartitions,
    runningSlot: deps.adaptive.runningSlot,
    targetSlot: deps.adaptive.targetSlot,
    stateDir: deps.adaptive.stateDir,
    fromChunk: update.nextChunk,
    logger: deps.logger,
    signal: deps.signal,
    onCommit: deps.onCommit,
    write: (payload, offset, data) => writers.get(payload)!.write(offset, data),
    afterChunk: async (chunk, s) => {
      update.method = 'adaptive';
      update.bytesFetched = fetchedBefore + s.bytesFetched;
      update.bytesReused = reusedBefore + s.bytesReused;
      update.bytesDownloaded = chunks[chunk].bundleOffset + chunks[chunk].storedSize;
      deps.progress(update);
      if (Date.now() - lastCheckpoint >= interval) {
        for (const w of writers.values()) await w.sync();
        update.nextChunk = chunk + 1;
        await deps.checkpoint(update);
        lastCheckpoint = Date.now();
      }
    },
  });
  if (!stats) return false;
  for (const w of writers.values()) await w.sync();
  update.nextChunk = chunks.length;
  update.bytesDownloaded = header.bundleSize;
  await deps.checkpoint(update);
  return true;
}
