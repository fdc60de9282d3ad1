import { createHash, type Hash } from 'node:crypto';
import type { Logger } from 'pino';
import { readVerifiedHeader, verifyChunks, type DeviceTrust, type VerifiedHeader } from '../bundle/verifier.js';
import { MAGIC, MANIFEST_OFFSET, PREAMBLE_LENGTH, decodePreamble } from '../bundle/format.js';
import { BundleStream, FIRST_REQUEST_BYTES } from './bundle-stream.js';
import { ByteReader, prepend, type ByteStream, type FillableSource } from '../bundle/byte-reader.js';
import { BundleError } from '../bundle/errors.js';
import { DownloadError } from '../download/errors.js';
import type { DownloadRequest } from '../download/https-source.js';
import type { SlotPartitions } from './config.js';
import type { BundleSummary, UpdateRecord } from './device-state.js';
import type { SlotWriter, SlotStorage } from './ports.js';
import type { HttpSource } from './workflow/context.js';
import { UpdateFailure } from './workflow/update-errors.js';
import { writePlainImage } from './plain-image.js';
import { AlignedBufferPool } from '../slots/aligned-buffer.js';
import { HashWorker } from '../install/hash-worker.js';
import type { AdaptiveDeps } from './adaptive-step.js';

export interface DownloadDeps {
  open: HttpSource;
  storage: SlotStorage;
  trust: DeviceTrust;
  /** The partitions of the slot being written (the inactive one). */
  targetPartitions: SlotPartitions;
  /** Options for every request of this download (CA, proxy, timeouts). */
  request: Omit<DownloadRequest, 'url' | 'start' | 'ifRange' | 'expectedTotal' | 'signal'>;
  logger: Logger;
  /** Persists the update record (after chunks are synced) and reports progress. */
  checkpoint: (update: UpdateRecord) => Promise<void>;
  progress: (update: UpdateRecord) => void;
  signal: AbortSignal;
  /** How often written chunks are synced and the position persisted. */
  checkpointIntervalMs?: number;
  /** The device config allows unsigned plain images pinned by sha256. */
  allowPlainImages?: boolean;
  /** The running slot and the state dir: with these, a format 2 bundle may install adaptively (docs/adaptive-updates.md). */
  adaptive?: AdaptiveDeps;
}

/**
 * Chunks in flight behind the one being written: one arriving from the network while another is
 * hashed on the hash worker (and expanded on libuv's pool). More would only hold memory: the slowest stage sets the pace.
 */
const READ_AHEAD = 2;

/**
 * Streams the bundle at the update's URI through the verifier straight into the target slot: no
 * byte of a chunk reaches the slot before that chunk's hash holds, nothing is held whole in memory
 * or copied to a temp file. The position (`nextChunk`) is persisted only after the chunks before it
 * are synced to the medium, so a restart resumes there (with an HTTP Range request).
 */
export async function downloadToSlot(update: UpdateRecord, deps: DownloadDeps): Promise<void> {
  // A pinned bundle is hashed whole as it streams, so it cannot resume in the middle.
  const resumeAt = update.pinnedSha256 ? 0 : update.nextChunk;
  // The header first, then only the bytes the install needs (bundle-stream.ts); a pinned download
  // hashes the whole file, so it asks for all of it at once.
  const bundle = new BundleStream(deps.open, { ...deps.request, url: update.fwPackageUri, signal: deps.signal }, update.pinnedSha256 ? undefined : FIRST_REQUEST_BYTES);
  const writers = new Map<string, SlotWriter>();
  let hasher: HashWorker | undefined;
  try {
    const first = await bundle.start();
    const { head, stream } = await peek(bundle, PREAMBLE_LENGTH);
    if (!head.subarray(0, MAGIC.length).equals(MAGIC)) {
      if (!deps.allowPlainImages) throw new UpdateFailure('notABundle', 'the file at the URI is not a piota bundle (and this device accepts no plain images)');
      await writePlainImage(update, stream, first.totalSize, { ...deps, securityVersion: deps.trust.securityVersion });
      return;
    }
    const headerEnd = headerLengthOf(head);
    if (headerEnd !== null && !update.pinnedSha256) bundle.endAt(headerEnd);
    const pin = update.pinnedSha256 ? createHash('sha256') : null;
    // The verifier stops reading after the last chunk (format 2 has more after it): a pinned download
    // keeps the rest of the stream open to hash it to the end (hashToEnd).
    const kept = pin ? new KeptOpen(stream) : null;
    const body = pin && kept ? tee(kept, pin) : stream;
    const header = await readVerifiedHeader(body, deps.trust);
    const summary = summarize(header, first.totalSize);
    checkVersion(update, summary);
    await checkPartitions(summary, deps);
    // A full install reads up to the last chunk (a format 2 bundle's unit store follows it).
    if (!pin) bundle.endAt(header.manifest.chunksEnd);

    let source: AsyncIterable<Uint8Array> = header.rest;
    let fromChunk = 0;
    if (resumeAt > 0 && sameBundle(update.bundle, summary) && resumeAt < summary.chunkCount) {
      fromChunk = resumeAt;
      const offset = header.manifest.chunks[fromChunk].bundleOffset;
      // The next read asks for the chunks from there, with If-Range: should the file change on the
      // server in between, the download starts again from its header rather than mixing two files.
      bundle.seekTo(offset);
      source = bundle;
      deps.logger.info({ updateId: update.updateId, chunk: fromChunk, offset }, 'resuming the download');
    } else if (resumeAt >= summary.chunkCount && sameBundle(update.bundle, summary) && !pin) {
      await header.rest.return();
      return; // everything was already on the medium
    }
    update.bundle = summary;
    update.nextChunk = fromChunk;
    update.bytesDownloaded = fromChunk === 0 ? summary.headerLength : header.manifest.chunks[fromChunk].bundleOffset;
    await deps.checkpoint(update);

    for (const payload of summary.payloads) {
      writers.set(payload.name, await deps.storage.openForWrite(deps.targetPartitions[payload.name]));
    }
    if (deps.adaptive && !pin && header.manifest.formatVersion >= 2) {
      // Only the blocks the slots lack, or false: the full download below. Once the adaptive install
      // has started it owns the connection; if it stops after that, the retry resumes at nextChunk.
      let committed = false;
      const onCommit = () => {
        committed = true;
        bundle.destroy();
      };
      // Loaded here: a full install (format 1, adaptive off) does without the adaptive modules' memory.
      const { downloadAdaptively } = await import('./adaptive-step.js');
      if (await downloadAdaptively(update, header, bundle.validator, writers, { ...deps, adaptive: deps.adaptive, ca: deps.request.ca, onCommit })) return;
      if (committed) throw new DownloadError('networkError', 'the adaptive download stopped; resuming with the full download', true);
    }
    let lastCheckpoint = Date.now();
    // An update that went adaptive before a restart and goes on in full: what it receives now counts too.
    const mixed = update.method === 'adaptive' ? { fetched: update.bytesFetched ?? 0, from: update.bytesDownloaded } : null;
    const interval = deps.checkpointIntervalMs ?? 2000;
    // A few aligned buffers, reused for the whole install: memory stays flat whatever the image size,
    // and the writer sends them to the medium with O_DIRECT.
    const buffers = new AlignedBufferPool(Math.max(...header.manifest.payloads.map((p) => p.chunkSize)), true);
    hasher = new HashWorker();
    const sha256 = hasher.sha256.bind(hasher);
    for await (const chunk of verifyChunks(header, source, fromChunk, { readAhead: READ_AHEAD, buffers, sha256 })) {
      if (deps.signal.aborted) throw deps.signal.reason;
      const info = header.manifest.chunks[chunk.index];
      await writers.get(chunk.payload)!.write(chunk.imageOffset, chunk.data);
      chunk.release();
      update.bytesDownloaded = info.bundleOffset + info.storedSize;
      if (mixed) update.bytesFetched = mixed.fetched + update.bytesDownloaded - mixed.from;
      deps.progress(update);
      if (Date.now() - lastCheckpoint >= interval) {
        for (const w of writers.values()) await w.sync();
        update.nextChunk = chunk.index + 1;
        await deps.checkpoint(update);
        lastCheckpoint = Date.now();
      }
    }
    for (const w of writers.values()) await w.sync();
    if (pin && kept) {
      await hashToEnd(kept, pin, header.bundleSize, update, deps);
      const actual = pin.digest('hex');
      if (actual !== update.pinnedSha256) {
        throw new UpdateFailure('sha256Mismatch', `the file at the URI has sha256 ${actual}, but the request pinned ${update.pinnedSha256}`);
      }
    }
    update.nextChunk = summary.chunkCount;
    update.bytesDownloaded = summary.totalBytes;
    await deps.checkpoint(update);
  } catch (err) {
    if (deps.signal.aborted) throw deps.signal.reason;
    throw err;
  } finally {
    bundle.destroy();
    for (const w of writers.values()) await w.close().catch(() => undefined);
    await hasher?.close();
  }
}

function summarize(header: VerifiedHeader, totalSize: number | null): BundleSummary {
  const m = header.manifest;
  if (totalSize !== null && totalSize !== header.bundleSize) {
    // The signed manifest is right about its own size; a server that says otherwise (a lying
    // Content-Length, a proxy that cut the file) is network trouble, retried like any other.
    throw new DownloadError('badResponse', `the server says the file has ${totalSize} bytes, but the bundle's signed manifest describes ${header.bundleSize}`, true);
  }
  return {
    version: m.version,
    securityVersion: m.securityVersion,
    headerLength: header.headerLength,
    totalBytes: header.bundleSize,
    chunkCount: m.chunks.length,
    payloads: m.payloads.map((p) => ({ name: p.name, imageSize: p.imageSize, imageSha256: p.imageSha256 })),
  };
}

function sameBundle(a: BundleSummary | null, b: BundleSummary): boolean {
  return a !== null && JSON.stringify(a) === JSON.stringify(b);
}

function checkVersion(update: UpdateRecord, summary: BundleSummary): void {
  if (update.expectedVersion !== null && update.expectedVersion !== summary.version) {
    throw new UpdateFailure('versionMismatch', `the request expects version ${update.expectedVersion}, but the bundle carries ${summary.version}`);
  }
}

async function checkPartitions(summary: BundleSummary, deps: DownloadDeps): Promise<void> {
  for (const p of summary.payloads) {
    // hasOwn: a payload named like an Object property ('constructor') is no partition of this device.
    const path = Object.hasOwn(deps.targetPartitions, p.name) ? deps.targetPartitions[p.name] : undefined;
    if (!path) {
      const known = Object.keys(deps.targetPartitions).join(', ');
      throw new UpdateFailure('incompatible', `the bundle carries a '${p.name}' payload, but this device's slots have only ${known}`);
    }
    const size = await deps.storage.partitionSize(path);
    if (p.imageSize > size) {
      throw new UpdateFailure('tooLarge', `the ${p.name} image has ${p.imageSize} bytes, but ${path} holds only ${size}`);
    }
  }
}

/**
 * A stream whose readers can stop without closing it, counting what they took: what one reader left
 * (the verifier stops after the last chunk) the next reads on from the same byte.
 */
class KeptOpen implements AsyncIterable<Uint8Array> {
  bytes = 0;
  private readonly iterator: AsyncIterator<Uint8Array>;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.iterator = source[Symbol.asyncIterator]();
  }

  async next(): Promise<IteratorResult<Uint8Array>> {
    const next = await this.iterator.next();
    if (!next.done) this.bytes += next.value.length;
    return next;
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return { next: () => this.next(), return: async () => ({ done: true, value: undefined }) };
  }
}

/**
 * Hashes the rest of a pinned bundle, after its last chunk (a format 2 bundle's unit stores and block
 * indexes), so that the pin covers the whole file; the bytes go nowhere else. More bytes than the
 * signed manifest's bundle size is not the file that was signed.
 */
async function hashToEnd(stream: KeptOpen, pin: Hash, bundleSize: number, update: UpdateRecord, deps: DownloadDeps): Promise<void> {
  for (let next = await stream.next(); !next.done; next = await stream.next()) {
    if (deps.signal.aborted) throw deps.signal.reason;
    if (stream.bytes > bundleSize) {
      throw new BundleError('malformed', `the bundle goes on past its end at byte ${bundleSize} (the signed manifest describes no more)`);
    }
    pin.update(next.value);
    update.bytesDownloaded = stream.bytes;
    deps.progress(update);
  }
  if (stream.bytes < bundleSize) {
    throw new BundleError('truncated', `the bundle ends at byte ${stream.bytes}; its signed manifest describes ${bundleSize} bytes`);
  }
}

/** The header's length from a bundle's preamble, or null when the preamble does not say (the verifier names why). */
function headerLengthOf(preamble: Buffer): number | null {
  try {
    return MANIFEST_OFFSET + decodePreamble(preamble).manifestLength;
  } catch {
    return null;
  }
}

/** Reads the first `length` bytes, and gives back a stream that still starts with them (and still fills buffers itself). */
async function peek(source: FillableSource, length: number): Promise<{ head: Buffer; stream: ByteStream }> {
  const reader = new ByteReader(source);
  const head = Buffer.alloc(length);
  const got = await reader.fill(head);
  return { head: head.subarray(0, got), stream: prepend(Buffer.from(head.subarray(0, got)), reader.rest()) };
}

async function* tee(source: AsyncIterable<Uint8Array>, hash: Hash): AsyncIterable<Uint8Array> {
  for await (const chunk of source) {
    hash.update(chunk);
    yield chunk;
  }
}
