import { readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { buildSlotIndex, saveSlotIndex } from './slot-index.js';

/*
 * The slot index builds in flight, one per file, shared by whoever asks for it: the daemon's idle
 * build after a commit and the download that finds no index of the running slot. Two builds of the
 * same file would read the partition twice and race on the rename.
 */

export function slotIndexDir(stateDir: string): string {
  return join(stateDir, 'slot-index');
}

export function slotIndexPath(stateDir: string, slot: string, payload: string): string {
  return join(slotIndexDir(stateDir), `${slot}-${payload}.bin`);
}

interface Build {
  done: Promise<boolean>;
  abort: AbortController;
  stateDir: string;
  slot: string;
}

const building = new Map<string, Build>();

export interface BackgroundBuildOptions {
  /** Abandons the build (nothing is saved) when it aborts. Only the caller that started the build can stop it this way. */
  signal?: AbortSignal;
  blockSize?: number;
}

/**
 * Builds and saves the index of a slot's partition, paced to `bytesPerSecond` (0: no limit), unless
 * one is being built already: then it resolves with that one. Resolves true once the index is saved,
 * false when the build failed (logged) or was stopped; it never rejects, so callers may leave it
 * running. The save is atomic (writeFileDurably): a stop or a power cut leaves the old file or none.
 */
export function buildSlotIndexInBackground(
  stateDir: string,
  slot: string,
  payload: string,
  device: string,
  size: number,
  bytesPerSecond: number,
  logger: Pick<Logger, 'info' | 'warn'>,
  options: BackgroundBuildOptions = {},
): Promise<boolean> {
  const path = slotIndexPath(stateDir, slot, payload);
  const running = building.get(path);
  if (running) return running.done;
  const abort = new AbortController();
  const onAbort = () => abort.abort();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  if (options.signal?.aborted) abort.abort();
  const done = (async () => {
    const started = Date.now();
    const index = await buildSlotIndex(device, size, { bytesPerSecond, blockSize: options.blockSize, signal: abort.signal });
    abort.signal.throwIfAborted();
    await saveSlotIndex(path, index);
    logger.info({ slot, payload, bytes: size, ms: Date.now() - started }, 'slot index built');
    return true;
  })()
    .catch((err: unknown) => {
      if (abort.signal.aborted) logger.info({ slot, payload }, 'slot index build stopped; it starts again when the device is idle');
      else logger.warn({ err: (err as Error).message ?? String(err), slot, payload }, 'slot index build failed; adaptive updates wait for the next one');
      return false;
    })
    .finally(() => {
      options.signal?.removeEventListener('abort', onAbort);
      building.delete(path);
    });
  building.set(path, { done, abort, stateDir, slot });
  return done;
}

/** Whether an index of this slot and payload is being built now. */
export function slotIndexBuilding(stateDir: string, slot: string, payload: string): boolean {
  return building.has(slotIndexPath(stateDir, slot, payload));
}

/**
 * Stops the builds in flight under `stateDir` (of one slot, or all) and waits for them: the daemon
 * stops, or the slot is about to be overwritten. Bounded by one read of 1 MiB and, if it had begun,
 * the save.
 */
export async function stopSlotIndexBuilds(stateDir: string, slot?: string): Promise<void> {
  const jobs = [...building.values()].filter((b) => b.stateDir === stateDir && (slot === undefined || b.slot === slot));
  for (const job of jobs) job.abort.abort();
  await Promise.all(jobs.map((j) => j.done));
}

/**
 * Forgets every index of `slot`: its contents are about to be overwritten, so after the update its
 * index would describe the release before. (An index used by the download that overwrites the slot
 * was read into memory before this; staleness could only cost misses, never a wrong byte, but a
 * fresh one is built after the commit.) Leftover temp files of interrupted saves go too.
 */
export async function dropSlotIndexes(stateDir: string, slot: string): Promise<void> {
  await stopSlotIndexBuilds(stateDir, slot);
  let names: string[];
  try {
    names = await readdir(slotIndexDir(stateDir));
  } catch {
    return;
  }
  // `.A-rootfs.bin.<pid>.<random>.tmp`: what writeFileDurably leaves when a save is cut short.
  const ours = (name: string) => (name.startsWith(`${slot}-`) && name.endsWith('.bin')) || (name.startsWith(`.${slot}-`) && name.endsWith('.tmp'));
  for (const name of names.filter(ours)) await unlink(join(slotIndexDir(stateDir), name)).catch(() => undefined);
}
