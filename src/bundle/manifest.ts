import { MAX_BLOCK_SIZE, MAX_UNIT_SIZE, MIN_BLOCK_SIZE, indexLength, isPowerOfTwo, lookupBytesFor } from './block-index.js';
import { COMPRESSIONS as CODECS, type Compression } from './compression.js';
import { BundleError } from './errors.js';
import { MANIFEST_OFFSET, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, maxStoredSize } from './format.js';

export type { Compression };
/** Format 1 knows exactly these; a codec added later (compression.ts) needs format 2. */
const V1_COMPRESSIONS: readonly Compression[] = ['gzip', 'none'];
export const COMPRESSIONS: readonly Compression[] = CODECS;
export function compressionsOf(formatVersion: number): readonly Compression[] {
  return formatVersion === 1 ? V1_COMPRESSIONS : CODECS;
}

/** Slot partition names (`rootfs`, `boot`): they become file and twin keys, so keep them plain. */
export const PAYLOAD_NAME = /^[a-z][a-z0-9_-]{0,31}$/;
/** Model names such as `raspberrypi4-64`. */
export const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;
/** Versions such as `2026.11.3` or `1.4.0-rc.1+build7`. */
export const VERSION_TEXT = /^[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;

/** The manifest as stored in the bundle (JSON). Chunk offsets are implied by the order. */
export interface StoredManifest {
  version: string;
  securityVersion: number;
  compatible: string[];
  createdAt: string;
  payloads: StoredPayload[];
}

export interface StoredPayload {
  name: string;
  compression: Compression;
  imageSize: number;
  imageSha256: string;
  chunkSize: number;
  chunks: { storedSize: number; sha256: string }[];
  /** Format 2: image bytes per lookup block (the unit of reuse). */
  blockSize?: number;
  /** Format 2: image bytes per compression unit (the unit of a Range fetch). */
  unitSize?: number;
  /** Format 2: the payload's unit store, after the last chunk. */
  store?: { storedSize: number; sha256: string };
  /** Format 2: the payload's block index (gzip), after the unit stores. */
  index?: { storedSize: number; sha256: string };
}

/** Where a format-2 payload's unit store and block index lie, and what they must hash to. */
export interface BlockIndexInfo {
  blockSize: number;
  unitSize: number;
  /** Bundle offset and length of the index section (gzip). */
  offset: number;
  size: number;
  sha256: string;
  /** Bundle offset and length of the unit store. */
  storeOffset: number;
  storeSize: number;
  storeSha256: string;
}

/** One payload: the image written to the slot partition `name`. */
export interface PayloadInfo {
  name: string;
  compression: Compression;
  /** Bytes of the image once expanded (what lands on the partition). */
  imageSize: number;
  /** sha256 of the whole expanded image (for read-back checks and the twin's `slots` record). */
  imageSha256: string;
  /** Image bytes per chunk (the last chunk may hold fewer). */
  chunkSize: number;
  /** Bytes the payload's chunks take in the bundle. */
  storedSize: number;
  /** Global index of its first chunk and how many it has. */
  firstChunk: number;
  chunkCount: number;
  /** Format 2 only. */
  blocks?: BlockIndexInfo;
}

/** One chunk, everything derived from the signed manifest. */
export interface ChunkInfo {
  /** Position in the bundle's chunk list (all payloads, in order). */
  index: number;
  /** The payload (partition) it belongs to. */
  payload: string;
  /** Where its stored bytes start in the bundle file (an HTTP Range resumes here). */
  bundleOffset: number;
  storedSize: number;
  /** Where its expanded bytes go in the payload's image. */
  imageOffset: number;
  imageSize: number;
  /** sha256 of its stored (compressed) bytes, checked before they are expanded. */
  sha256: string;
}

export interface BundleManifest {
  formatVersion: number;
  version: string;
  securityVersion: number;
  compatible: string[];
  createdAt: string;
  payloads: PayloadInfo[];
  chunks: ChunkInfo[];
  /** Bytes before the first chunk (preamble, signature area, manifest). */
  headerLength: number;
  /** Where the last chunk ends: format 2's unit stores and block indexes follow (a full install stops here). */
  chunksEnd: number;
  /** Total bytes of the bundle file. */
  bundleSize: number;
}

function fail(field: string, problem: string): never {
  throw new BundleError('malformed', `manifest: ${field} ${problem}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Unknown fields are refused: a feature an old device would silently ignore needs a new format version. */
function onlyFields(v: Record<string, unknown>, field: string, allowed: string[]): void {
  for (const k of Object.keys(v)) if (!allowed.includes(k)) fail(field, `has an unknown field '${k}'`);
}

function text(v: unknown, field: string, pattern: RegExp): string {
  if (typeof v !== 'string' || !pattern.test(v)) fail(field, `must match ${pattern}, got ${JSON.stringify(v)}`);
  return v;
}

function count(v: unknown, field: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    fail(field, `must be a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return v;
}

const V1_FIELDS = ['name', 'compression', 'imageSize', 'imageSha256', 'chunkSize', 'chunks'];
const V2_FIELDS = [...V1_FIELDS, 'blockSize', 'unitSize', 'store', 'index'];

function validatePayload(v: unknown, field: string, formatVersion: number): StoredPayload {
  if (!isObject(v)) fail(field, 'must be an object');
  onlyFields(v, field, formatVersion === 1 ? V1_FIELDS : V2_FIELDS);
  const name = text(v.name, `${field}.name`, PAYLOAD_NAME);
  const codecs = compressionsOf(formatVersion);
  if (!codecs.includes(v.compression as Compression)) fail(`${field}.compression`, `must be one of ${codecs.join(', ')} in format ${formatVersion}`);
  const imageSize = count(v.imageSize, `${field}.imageSize`, 1);
  const imageSha256 = text(v.imageSha256, `${field}.imageSha256`, SHA256_HEX);
  const chunkSize = count(v.chunkSize, `${field}.chunkSize`, MIN_CHUNK_SIZE, MAX_CHUNK_SIZE);
  if (!Array.isArray(v.chunks)) fail(`${field}.chunks`, 'must be an array');
  const expected = Math.ceil(imageSize / chunkSize);
  if (v.chunks.length !== expected) fail(`${field}.chunks`, `has ${v.chunks.length} entries, imageSize and chunkSize imply ${expected}`);
  const chunks = v.chunks.map((c: unknown, i: number) => {
    const cf = `${field}.chunks[${i}]`;
    if (!isObject(c)) fail(cf, 'must be an object');
    onlyFields(c, cf, ['storedSize', 'sha256']);
    const image = Math.min(chunkSize, imageSize - i * chunkSize);
    const limit = v.compression === 'none' ? image : maxStoredSize(image);
    const storedSize = count(c.storedSize, `${cf}.storedSize`, v.compression === 'none' ? image : 1, limit);
    return { storedSize, sha256: text(c.sha256, `${cf}.sha256`, SHA256_HEX) };
  });
  const payload: StoredPayload = { name, compression: v.compression as Compression, imageSize, imageSha256, chunkSize, chunks };
  return formatVersion === 1 ? payload : { ...payload, ...validateBlockFields(v, field, payload) };
}

/** Format 2's fields: block and unit sizes that tile the chunks, and the index section's size and hash. */
function validateBlockFields(v: Record<string, unknown>, field: string, p: StoredPayload): Pick<StoredPayload, 'blockSize' | 'unitSize' | 'store' | 'index'> {
  const blockSize = count(v.blockSize, `${field}.blockSize`, MIN_BLOCK_SIZE, MAX_BLOCK_SIZE);
  if (!isPowerOfTwo(blockSize)) fail(`${field}.blockSize`, `must be a power of two, got ${blockSize}`);
  const unitSize = count(v.unitSize, `${field}.unitSize`, blockSize, MAX_UNIT_SIZE);
  if (unitSize % blockSize !== 0) fail(`${field}.unitSize`, `must be a multiple of blockSize ${blockSize}, got ${unitSize}`);
  if (p.chunkSize % unitSize !== 0) fail(`${field}.unitSize`, `must divide chunkSize ${p.chunkSize}, got ${unitSize}`);
  const layout = { imageSize: p.imageSize, chunkSize: p.chunkSize, blockSize, unitSize };
  const section = (name: 'store' | 'index', most: number) => {
    const s = v[name];
    if (!isObject(s)) fail(`${field}.${name}`, 'must be an object');
    onlyFields(s, `${field}.${name}`, ['storedSize', 'sha256']);
    return { storedSize: count(s.storedSize, `${field}.${name}.storedSize`, 1, most), sha256: text(s.sha256, `${field}.${name}.sha256`, SHA256_HEX) };
  };
  const units = Math.ceil(p.imageSize / unitSize);
  return {
    blockSize,
    unitSize,
    store: section('store', maxStoredSize(p.imageSize) + units * 16),
    index: section('index', maxStoredSize(indexLength(layout, 32))),
  };
}

/** The largest index `create` can write for a payload (before gzip; lookup key length from the block count). */
export function plannedIndexLength(layout: { imageSize: number; chunkSize: number; blockSize: number; unitSize: number }): number {
  return maxStoredSize(indexLength(layout, lookupBytesFor(Math.ceil(layout.imageSize / layout.blockSize))));
}

export function validateStoredManifest(v: unknown, formatVersion = 1): StoredManifest {
  if (!isObject(v)) fail('', 'must be a JSON object');
  onlyFields(v, 'top level', ['version', 'securityVersion', 'compatible', 'createdAt', 'payloads']);
  const version = text(v.version, 'version', VERSION_TEXT);
  const securityVersion = count(v.securityVersion, 'securityVersion', 0);
  if (!Array.isArray(v.compatible) || v.compatible.length === 0) fail('compatible', 'must be a non-empty array of model names');
  const compatible = v.compatible.map((m: unknown, i: number) => text(m, `compatible[${i}]`, MODEL_NAME));
  if (typeof v.createdAt !== 'string' || Number.isNaN(Date.parse(v.createdAt))) fail('createdAt', 'must be an ISO date');
  if (!Array.isArray(v.payloads) || v.payloads.length === 0) fail('payloads', 'must be a non-empty array');
  const payloads = v.payloads.map((p: unknown, i: number) => validatePayload(p, `payloads[${i}]`, formatVersion));
  const names = new Set(payloads.map((p) => p.name));
  if (names.size !== payloads.length) fail('payloads', 'name the same partition twice');
  return { version, securityVersion, compatible, createdAt: v.createdAt, payloads };
}

/** Adds what the stored form implies: chunk offsets, the header length, the bundle size. */
export function describeManifest(stored: StoredManifest, manifestLength: number, formatVersion = 1): BundleManifest {
  const headerLength = MANIFEST_OFFSET + manifestLength;
  let bundleOffset = headerLength;
  const chunks: ChunkInfo[] = [];
  const payloads: PayloadInfo[] = stored.payloads.map((p) => {
    const firstChunk = chunks.length;
    const start = bundleOffset;
    p.chunks.forEach((c, i) => {
      const imageOffset = i * p.chunkSize;
      chunks.push({
        index: chunks.length,
        payload: p.name,
        bundleOffset,
        storedSize: c.storedSize,
        imageOffset,
        imageSize: Math.min(p.chunkSize, p.imageSize - imageOffset),
        sha256: c.sha256,
      });
      bundleOffset += c.storedSize;
    });
    return {
      name: p.name,
      compression: p.compression,
      imageSize: p.imageSize,
      imageSha256: p.imageSha256,
      chunkSize: p.chunkSize,
      storedSize: bundleOffset - start,
      firstChunk,
      chunkCount: p.chunks.length,
    };
  });
  const chunksEnd = bundleOffset;
  // Format 2: every payload's unit store, then every payload's index.
  const storeAt: number[] = [];
  for (const p of stored.payloads) {
    storeAt.push(bundleOffset);
    bundleOffset += p.store?.storedSize ?? 0;
  }
  stored.payloads.forEach((p, i) => {
    if (!p.index || !p.store || p.blockSize === undefined || p.unitSize === undefined) return;
    payloads[i].blocks = {
      blockSize: p.blockSize,
      unitSize: p.unitSize,
      offset: bundleOffset,
      size: p.index.storedSize,
      sha256: p.index.sha256,
      storeOffset: storeAt[i],
      storeSize: p.store.storedSize,
      storeSha256: p.store.sha256,
    };
    bundleOffset += p.index.storedSize;
  });
  if (!Number.isSafeInteger(bundleOffset)) fail('payloads', 'add up to an impossible bundle size');
  return {
    formatVersion,
    version: stored.version,
    securityVersion: stored.securityVersion,
    compatible: stored.compatible,
    createdAt: stored.createdAt,
    payloads,
    chunks,
    headerLength,
    chunksEnd,
    bundleSize: bundleOffset,
  };
}

/**
 * Parses manifest bytes (already length-checked, and signature-checked where it matters) by the
 * rules of `formatVersion` (from the preamble, which the signature covers). Without it, a manifest
 * with format 2's `index` fields is read as format 2.
 */
export function parseManifest(bytes: Buffer, formatVersion?: number): BundleManifest {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    throw new BundleError('malformed', `manifest is not valid UTF-8 JSON (${(err as Error).message})`);
  }
  const version = formatVersion ?? (looksLikeFormat2(value) ? 2 : 1);
  return describeManifest(validateStoredManifest(value, version), bytes.length, version);
}

function looksLikeFormat2(v: unknown): boolean {
  return isObject(v) && Array.isArray(v.payloads) && v.payloads.some((p) => isObject(p) && 'index' in p);
}
