import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { unpackIndex, type BlockIndex } from '../bundle/block-index.js';
import { BundleError } from '../bundle/errors.js';
import { readHeaderFrom } from '../bundle/inspect.js';
import type { BundleManifest, PayloadInfo } from '../bundle/manifest.js';
import { BlockLookup } from './block-lookup.js';
import { predict } from './plan.js';

/** What a device holding OLD in its running slot downloads for NEW (`piota bundle diff`). */
export interface DiffReport {
  old: { file: string; version: string };
  new: { file: string; version: string; formatVersion: number; bundleSize: number };
  /** What a full install downloads: the header and the chunks. */
  fullBytes: number;
  /** What an adaptive install downloads: the header, the block indexes and the fetched units. */
  adaptiveBytes: number;
  /** adaptiveBytes / fullBytes. */
  share: number;
  payloads: {
    name: string;
    imageSize: number;
    indexBytes: number;
    fetchBytes: number;
    requests: number;
    reusedBytes: number;
    zeroBytes: number;
  }[];
}

async function readIndex(fh: Awaited<ReturnType<typeof open>>, file: string, p: PayloadInfo): Promise<BlockIndex> {
  const b = p.blocks!;
  const bytes = Buffer.alloc(b.size);
  const { bytesRead } = await fh.read(bytes, 0, b.size, b.offset);
  if (bytesRead < b.size) throw new BundleError('truncated', `${file} ends inside the block index of ${p.name}`);
  const digest = createHash('sha256').update(bytes).digest('hex');
  if (digest !== b.sha256) throw new BundleError('hashMismatch', `${file}: the block index of ${p.name} has sha256 ${digest}, its manifest says ${b.sha256}`);
  return unpackIndex(bytes, { imageSize: p.imageSize, chunkSize: p.chunkSize, blockSize: b.blockSize, unitSize: b.unitSize }, `${file}: the block index of ${p.name}`);
}

async function readBundle(file: string): Promise<{ manifest: BundleManifest; indexes: Map<string, BlockIndex> }> {
  const fh = await open(file, 'r');
  try {
    const { manifest } = await readHeaderFrom(fh);
    const indexes = new Map<string, BlockIndex>();
    for (const p of manifest.payloads) {
      if (!p.blocks) throw new BundleError('unsupportedFormat', `${file} is a format ${manifest.formatVersion} bundle without block indexes: make it with --format 2`);
      indexes.set(p.name, await readIndex(fh, file, p));
    }
    return { manifest, indexes };
  } finally {
    await fh.close();
  }
}

/**
 * Predicts, from the two bundles' block indexes alone, what a device running OLD downloads for NEW:
 * the same lookup an install does against the running slot's index (a slot freshly written with
 * OLD). The target slot, which may hold a release before OLD, can only lower the figure.
 */
export async function diffBundles(oldFile: string, newFile: string): Promise<DiffReport> {
  const before = await readBundle(oldFile);
  const after = await readBundle(newFile);
  const m = after.manifest;
  const report: DiffReport = {
    old: { file: oldFile, version: before.manifest.version },
    new: { file: newFile, version: m.version, formatVersion: m.formatVersion, bundleSize: m.bundleSize },
    fullBytes: m.chunksEnd,
    adaptiveBytes: m.headerLength,
    share: 0,
    payloads: [],
  };
  for (const p of m.payloads) {
    const index = after.indexes.get(p.name)!;
    const old = before.indexes.get(p.name);
    const sameBlocks = old && old.layout.blockSize === index.layout.blockSize;
    const running = sameBlocks ? new BlockLookup(old.lookup, old.lookupBytes) : undefined;
    const chunks = m.chunks.slice(p.firstChunk, p.firstChunk + p.chunkCount);
    const got = predict(index, p, chunks, { running });
    report.payloads.push({ name: p.name, imageSize: p.imageSize, indexBytes: p.blocks!.size, ...got });
    report.adaptiveBytes += p.blocks!.size + got.fetchBytes;
  }
  report.share = report.adaptiveBytes / report.fullBytes;
  return report;
}
