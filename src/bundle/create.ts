import { createHash } from 'node:crypto';
import { open, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { syncDirectory } from '../os/durable-file.js';
import { BlockIndex, DEFAULT_BLOCK_SIZE, DEFAULT_UNIT_SIZE, MAX_UNIT_SIZE, compressUnits, lookupBytesFor, packIndex } from './block-index.js';
import { compressChunk } from './compression.js';
import { BundleError } from './errors.js';
import {
  DEFAULT_CHUNK_SIZE,
  DEFAULT_CREATE_FORMAT,
  FORMAT_VERSIONS,
  MANIFEST_OFFSET,
  MAX_CHUNK_SIZE,
  MAX_MANIFEST_LENGTH,
  MIN_CHUNK_SIZE,
  PREAMBLE_LENGTH,
  encodePreamble,
  encodeSignatureArea,
  maxStoredSize,
  signedMessage,
} from './format.js';
import { keyIdOf, loadPrivateKey, publicKeyOf, signMessage } from './keys.js';
import {
  MODEL_NAME,
  PAYLOAD_NAME,
  VERSION_TEXT,
  compressionsOf,
  describeManifest,
  plannedIndexLength,
  type BundleManifest,
  type Compression,
  type StoredManifest,
  type StoredPayload,
} from './manifest.js';

export interface CreateBundleOptions {
  /** The bundle file to write (replaced atomically when complete). */
  out: string;
  version: string;
  /** Model names the bundle may be installed on, e.g. ['raspberrypi4-64']. */
  compatible: string[];
  /** Each payload: the slot partition it targets and the image file to read. */
  payloads: { name: string; file: string }[];
  /** Monotonic; devices refuse a bundle lower than the one they run. Default 0. */
  securityVersion?: number;
  /** Default 'gzip'. */
  compression?: Compression;
  /** Image bytes per chunk, MIN_CHUNK_SIZE..MAX_CHUNK_SIZE. Default 4 MiB. */
  chunkSize?: number;
  /** PEM PKCS#8 ed25519 private keys to sign with; none makes an unsigned bundle for `signBundle`. */
  signingKeys?: string[];
  /** Recorded in the manifest. Default now. */
  createdAt?: Date;
  /** 1 (chunks only, for agents before adaptive updates) or 2 (adds block indexes). Default 2. */
  formatVersion?: number;
  /** Format 2: image bytes per compression unit, a multiple of 4 KiB dividing the chunk size. Default 4 KiB. */
  unitSize?: number;
}

export interface CreatedBundle {
  path: string;
  manifest: BundleManifest;
  /** Ids of the keys that signed it (empty: unsigned). */
  signedBy: string[];
}

interface PayloadSource {
  name: string;
  file: string;
  size: number;
}

function invalid(message: string): never {
  throw new BundleError('invalidArgument', message);
}

function validateOptions(o: CreateBundleOptions): void {
  if (typeof o.version !== 'string' || !VERSION_TEXT.test(o.version)) invalid(`version ${JSON.stringify(o.version)} must match ${VERSION_TEXT}`);
  if (!Array.isArray(o.compatible) || o.compatible.length === 0) invalid('at least one compatible model is required');
  for (const m of o.compatible) if (!MODEL_NAME.test(m)) invalid(`compatible model ${JSON.stringify(m)} must match ${MODEL_NAME}`);
  if (new Set(o.compatible).size !== o.compatible.length) invalid('a compatible model is listed twice');
  if (!Array.isArray(o.payloads) || o.payloads.length === 0) invalid('at least one payload is required');
  for (const p of o.payloads) if (!PAYLOAD_NAME.test(p.name)) invalid(`payload name ${JSON.stringify(p.name)} must match ${PAYLOAD_NAME}`);
  if (new Set(o.payloads.map((p) => p.name)).size !== o.payloads.length) invalid('two payloads target the same partition');
  const sv = o.securityVersion ?? 0;
  if (!Number.isSafeInteger(sv) || sv < 0) invalid(`securityVersion must be a whole number >= 0, got ${sv}`);
  const fv = o.formatVersion ?? DEFAULT_CREATE_FORMAT;
  if (!FORMAT_VERSIONS.includes(fv)) invalid(`format version must be one of ${FORMAT_VERSIONS.join(', ')}, got ${fv}`);
  const codecs = compressionsOf(fv);
  if (!codecs.includes(o.compression ?? 'gzip')) invalid(`compression must be one of ${codecs.join(', ')} in format ${fv}`);
  const cs = o.chunkSize ?? DEFAULT_CHUNK_SIZE;
  if (!Number.isSafeInteger(cs) || cs < MIN_CHUNK_SIZE || cs > MAX_CHUNK_SIZE) {
    invalid(`chunk size must be from ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE} bytes, got ${cs}`);
  }
  if (fv === 1) {
    if (o.unitSize !== undefined) invalid('unit size is a format 2 option (--format 2)');
    return;
  }
  const us = o.unitSize ?? DEFAULT_UNIT_SIZE;
  if (!Number.isSafeInteger(us) || us < DEFAULT_BLOCK_SIZE || us > MAX_UNIT_SIZE || us % DEFAULT_BLOCK_SIZE !== 0) {
    invalid(`unit size must be a multiple of ${DEFAULT_BLOCK_SIZE} from ${DEFAULT_BLOCK_SIZE} to ${MAX_UNIT_SIZE} bytes, got ${us}`);
  }
  if (cs % us !== 0) invalid(`in format 2 the chunk size (${cs}) must be a multiple of the unit size (${us})`);
}

/** Format 2's choices for one payload (undefined: format 1). */
interface BlockShape {
  blockSize: number;
  unitSize: number;
}

async function sizeOf(p: { name: string; file: string }): Promise<PayloadSource> {
  let s;
  try {
    s = await stat(p.file);
  } catch (err) {
    invalid(`payload ${p.name}: cannot read ${p.file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  if (!s.isFile()) invalid(`payload ${p.name}: ${p.file} is not a regular file`);
  if (s.size === 0) invalid(`payload ${p.name}: ${p.file} is empty`);
  return { name: p.name, file: p.file, size: s.size };
}

/**
 * The longest the manifest can become: every value not known before the payloads are read is set
 * to the widest it can be. The chunks are written after that much room, the manifest last.
 */
function reservedManifestLength(
  base: Omit<StoredManifest, 'payloads'>,
  sources: PayloadSource[],
  compression: Compression,
  chunkSize: number,
  shape: BlockShape | undefined,
): number {
  const payloads: StoredPayload[] = sources.map((s) => {
    const chunks = [];
    for (let at = 0; at < s.size; at += chunkSize) {
      const image = Math.min(chunkSize, s.size - at);
      chunks.push({ storedSize: compression === 'none' ? image : maxStoredSize(image), sha256: 'f'.repeat(64) });
    }
    const payload: StoredPayload = { name: s.name, compression, imageSize: s.size, imageSha256: 'f'.repeat(64), chunkSize, chunks };
    if (!shape) return payload;
    const layout = { imageSize: s.size, chunkSize, ...shape };
    const store = { storedSize: maxStoredSize(s.size) + Math.ceil(s.size / shape.unitSize) * 16, sha256: 'f'.repeat(64) };
    return { ...payload, ...shape, store, index: { storedSize: plannedIndexLength(layout), sha256: 'f'.repeat(64) } };
  });
  return Buffer.byteLength(JSON.stringify({ ...base, payloads }));
}

async function readFully(fh: FileHandle, buffer: Buffer, length: number, position: number, source: PayloadSource): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) invalid(`payload ${source.name}: ${source.file} shrank while it was being read`);
    done += bytesRead;
  }
}

/**
 * Chunks compressed at once on libuv's thread pool: chunks are independent, so compression uses
 * several cores while the main thread reads and hashes. Bounds memory to this many chunks.
 */
const COMPRESS_AHEAD = Math.max(1, Math.min(4, availableParallelism()));

/** Writes one payload's chunks from `offset` on; returns its manifest entry and where it ended. */
async function writePayload(
  out: FileHandle,
  offset: number,
  source: PayloadSource,
  compression: Compression,
  chunkSize: number,
  shape: BlockShape | undefined,
): Promise<{ payload: StoredPayload; end: number; index?: BlockIndex }> {
  const input = await open(source.file, 'r');
  const inFlight: { at: number; length: number; stored: Promise<Buffer> }[] = [];
  const builder = shape ? new IndexBuilder({ imageSize: source.size, chunkSize, ...shape }) : undefined;
  try {
    const imageHash = createHash('sha256');
    const chunks: StoredPayload['chunks'] = [];
    const writeNext = async () => {
      const { at, length, stored: pending } = inFlight.shift()!;
      const stored = await pending;
      if (stored.length > maxStoredSize(length)) invalid(`payload ${source.name}: chunk at ${at} grew past the format's bound when compressed`);
      chunks.push({ storedSize: stored.length, sha256: createHash('sha256').update(stored).digest('hex') });
      await writeFully(out, stored, offset);
      offset += stored.length;
    };
    for (let at = 0; at < source.size; at += chunkSize) {
      const length = Math.min(chunkSize, source.size - at);
      const image = Buffer.allocUnsafe(length);
      await readFully(input, image, length, at, source);
      imageHash.update(image);
      builder?.addChunk(at, image);
      const stored = compressChunk(compression, image);
      stored.catch(() => undefined); // awaited in order by writeNext; this only keeps an early failure from being "unhandled"
      inFlight.push({ at, length, stored });
      if (inFlight.length >= COMPRESS_AHEAD) await writeNext();
    }
    while (inFlight.length > 0) await writeNext();
    if ((await input.stat()).size !== source.size) invalid(`payload ${source.name}: ${source.file} changed size while it was being read`);
    const payload: StoredPayload = { name: source.name, compression, imageSize: source.size, imageSha256: imageHash.digest('hex'), chunkSize, chunks };
    return { payload, end: offset, index: builder?.finish() };
  } finally {
    await Promise.allSettled(inFlight.map((c) => c.stored));
    await input.close();
  }
}

/**
 * Format 2: reads the image a second time and writes its unit store from `offset` on (each unit
 * compressed on its own), recording every unit's stored size in the index. Returns where it ended.
 */
async function writeStore(out: FileHandle, offset: number, source: PayloadSource, index: BlockIndex): Promise<{ end: number; sha256: string }> {
  const input = await open(source.file, 'r');
  const { chunkSize, unitSize } = index.layout;
  const hash = createHash('sha256');
  try {
    for (let at = 0; at < source.size; at += chunkSize) {
      const length = Math.min(chunkSize, source.size - at);
      const image = Buffer.allocUnsafe(length);
      await readFully(input, image, length, at, source);
      const units = compressUnits(image, unitSize);
      index.unitStored.set(units.map((u) => u.length), at / unitSize);
      const stored = Buffer.concat(units);
      hash.update(stored);
      await writeFully(out, stored, offset);
      offset += stored.length;
    }
    return { end: offset, sha256: hash.digest('hex') };
  } finally {
    await input.close();
  }
}

/** Collects a format-2 payload's block index while its chunks are compressed. */
class IndexBuilder {
  private readonly index: BlockIndex;

  constructor(layout: { imageSize: number; chunkSize: number; blockSize: number; unitSize: number }) {
    const blockCount = Math.ceil(layout.imageSize / layout.blockSize);
    const lookupBytes = lookupBytesFor(blockCount);
    this.index = new BlockIndex(
      layout,
      lookupBytes,
      new Uint8Array(blockCount * lookupBytes),
      new Uint16Array(Math.ceil(layout.imageSize / layout.unitSize)),
      new Uint8Array(Math.ceil(layout.imageSize / layout.chunkSize) * 32),
    );
  }

  /** Hashes the chunk's blocks and the chunk (image bytes at `at`). */
  addChunk(at: number, image: Buffer): void {
    const { blockSize, chunkSize } = this.index.layout;
    const { lookupBytes } = this.index;
    for (let b = 0; b < image.length; b += blockSize) {
      const key = createHash('sha256').update(image.subarray(b, b + blockSize)).digest().subarray(0, lookupBytes);
      this.index.lookup.set(key, ((at + b) / blockSize) * lookupBytes);
    }
    this.index.chunkImageSha256.set(createHash('sha256').update(image).digest(), (at / chunkSize) * 32);
  }

  finish(): BlockIndex {
    return this.index;
  }
}

async function writeFully(fh: FileHandle, data: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

/**
 * Streams the payload files into a new bundle, a few chunks in memory at a time, so a 4 GiB image
 * needs no more memory than a small one. Signs it when signing keys are given.
 */
export async function createBundle(options: CreateBundleOptions): Promise<CreatedBundle> {
  validateOptions(options);
  const compression = options.compression ?? 'gzip';
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  const formatVersion = options.formatVersion ?? DEFAULT_CREATE_FORMAT;
  const shape = formatVersion >= 2 ? { blockSize: DEFAULT_BLOCK_SIZE, unitSize: options.unitSize ?? DEFAULT_UNIT_SIZE } : undefined;
  const keys = (options.signingKeys ?? []).map((pem, i) => loadPrivateKey(pem, `signing key ${i + 1}`));
  const sources = await Promise.all(options.payloads.map(sizeOf));
  const base = {
    version: options.version,
    securityVersion: options.securityVersion ?? 0,
    compatible: [...options.compatible],
    createdAt: (options.createdAt ?? new Date()).toISOString(),
  };
  const reserved = reservedManifestLength(base, sources, compression, chunkSize, shape);
  if (reserved > MAX_MANIFEST_LENGTH) {
    invalid(`the manifest would take ${reserved} bytes, more than the format's ${MAX_MANIFEST_LENGTH}: use a larger chunk size`);
  }

  const tmp = join(dirname(options.out), `.${basename(options.out)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const out = await open(tmp, 'wx', 0o644).catch((err: NodeJS.ErrnoException) => invalid(`cannot create ${options.out} (${err.code ?? err.message})`));
  try {
    let offset = MANIFEST_OFFSET + reserved;
    const payloads: StoredPayload[] = [];
    const indexes: (BlockIndex | undefined)[] = [];
    for (const source of sources) {
      const written = await writePayload(out, offset, source, compression, chunkSize, shape);
      payloads.push(shape ? { ...written.payload, ...shape } : written.payload);
      indexes.push(written.index);
      offset = written.end;
    }
    // Format 2: after the last chunk (where a full install stops), the unit stores, then the indexes.
    for (const [i, index] of indexes.entries()) {
      if (!index) continue;
      const store = await writeStore(out, offset, sources[i], index);
      payloads[i].store = { storedSize: store.end - offset, sha256: store.sha256 };
      offset = store.end;
    }
    for (const [i, index] of indexes.entries()) {
      if (!index) continue;
      const packed = packIndex(index);
      await writeFully(out, packed, offset);
      offset += packed.length;
      payloads[i].index = { storedSize: packed.length, sha256: createHash('sha256').update(packed).digest('hex') };
    }
    const manifestBytes = Buffer.alloc(reserved, ' ');
    manifestBytes.write(JSON.stringify({ ...base, payloads } satisfies StoredManifest));
    const preamble = encodePreamble(reserved, formatVersion);
    const message = signedMessage(preamble, manifestBytes);
    const signatures = keys.map((key) => ({ keyId: keyIdOf(publicKeyOf(key)), signature: signMessage(key, message) }));
    await writeFully(out, preamble, 0);
    await writeFully(out, encodeSignatureArea(signatures), PREAMBLE_LENGTH);
    await writeFully(out, manifestBytes, MANIFEST_OFFSET);
    await out.sync();
    await out.close();
    await rename(tmp, options.out);
    await syncDirectory(dirname(options.out));
    return {
      path: options.out,
      manifest: describeManifest({ ...base, payloads }, reserved, formatVersion),
      signedBy: signatures.map((s) => s.keyId),
    };
  } catch (err) {
    await out.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}
