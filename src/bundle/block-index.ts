import { createHash } from 'node:crypto';
import { deflateRawSync, gunzipSync, gzipSync, inflateRawSync } from 'node:zlib';
import { BundleError } from './errors.js';

/*
 * Format version 2 adds, per payload, what an adaptive install needs (docs/bundle-format.md,
 * "Format version 2", and docs/adaptive-updates.md). The chunks stay exactly as in format 1, so a
 * full install reads and expands the same bytes as before and stops after the last chunk. After the
 * chunks come:
 *
 * - a *unit store* per payload: the image again, each unit (a few blocks) compressed on its own
 *   (one raw deflate stream each), so a device can fetch any unit with an HTTP Range request and
 *   expand it alone;
 * - a block index per payload (gzip), covered by the signature through its sha256 in the manifest:
 *   a truncated sha256 per block (the lookup key), the stored size of every unit (so unit offsets
 *   follow), and the sha256 of every chunk's image bytes (what an assembled chunk must hash to
 *   before it is written).
 */

export const INDEX_MAGIC = Buffer.from('PIOTAIX1', 'latin1');
const INDEX_FIXED = 24;
export const DEFAULT_BLOCK_SIZE = 4096;
export const MIN_BLOCK_SIZE = 1024;
export const MAX_BLOCK_SIZE = 65536;
/** A unit's stored size is a u16 in the index: a unit holds at most this much image. */
export const MAX_UNIT_SIZE = 32768;
/** Chosen by measurement on the release pair (docs/adaptive-updates.md). */
export const DEFAULT_UNIT_SIZE = 4096;
/**
 * Lookup bytes per block: the fewest whole bytes that keep the expected number of false matches
 * (pairs of different blocks with equal keys, between an image and a slot of the same size) under
 * 1 in 100. A false match costs one chunk fetched again, never a wrong byte.
 */
export function lookupBytesFor(blockCount: number): number {
  const bits = Math.log2(Math.max(2, blockCount)) * 2 + Math.log2(100);
  return Math.min(32, Math.max(4, Math.ceil(bits / 8)));
}

export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

/** The layout facts of a v2 payload that the index depends on. */
export interface BlockLayout {
  imageSize: number;
  chunkSize: number;
  blockSize: number;
  unitSize: number;
}

export function countsOf(l: BlockLayout): { blockCount: number; unitCount: number; chunkCount: number } {
  return {
    blockCount: Math.ceil(l.imageSize / l.blockSize),
    // Units never straddle chunks (unitSize divides chunkSize), so this is ceil(imageSize / unitSize).
    unitCount: Math.ceil(l.imageSize / l.unitSize),
    chunkCount: Math.ceil(l.imageSize / l.chunkSize),
  };
}

export function indexLength(l: BlockLayout, lookupBytes: number): number {
  const { blockCount, unitCount, chunkCount } = countsOf(l);
  return INDEX_FIXED + blockCount * lookupBytes + unitCount * 2 + chunkCount * 32;
}

/** A decoded index: typed arrays only, so a 4 GiB image's million blocks are a few flat buffers. */
export class BlockIndex {
  constructor(
    readonly layout: BlockLayout,
    readonly lookupBytes: number,
    /** blockCount × lookupBytes: the first bytes of each block's sha256. */
    readonly lookup: Uint8Array,
    /** Stored bytes of each unit in the unit store. */
    readonly unitStored: Uint16Array,
    /** chunkCount × 32: sha256 of each chunk's image bytes. */
    readonly chunkImageSha256: Uint8Array,
  ) {}

  get blockCount(): number {
    return this.lookup.length / this.lookupBytes;
  }

  /** The lookup key of block `i` as a view (no copy). */
  key(i: number): Uint8Array {
    return this.lookup.subarray(i * this.lookupBytes, (i + 1) * this.lookupBytes);
  }

  encode(): Buffer {
    const { blockCount, unitCount, chunkCount } = countsOf(this.layout);
    const b = Buffer.alloc(indexLength(this.layout, this.lookupBytes));
    INDEX_MAGIC.copy(b, 0);
    b.writeUInt32BE(blockCount, 8);
    b.writeUInt32BE(unitCount, 12);
    b.writeUInt32BE(chunkCount, 16);
    b.writeUInt8(this.lookupBytes, 20);
    let at = INDEX_FIXED;
    b.set(this.lookup, at);
    at += this.lookup.length;
    for (let u = 0; u < unitCount; u++, at += 2) b.writeUInt16BE(this.unitStored[u], at);
    b.set(this.chunkImageSha256, at);
    return b;
  }

  /** Decodes index bytes whose sha256 already matched the signed manifest; checks their shape anyway. */
  static decode(b: Buffer, layout: BlockLayout, what: string): BlockIndex {
    const bad = (problem: string): never => {
      throw new BundleError('malformed', `${what}: ${problem}`);
    };
    if (b.length < INDEX_FIXED || !b.subarray(0, 8).equals(INDEX_MAGIC)) bad('does not start with the index magic PIOTAIX1');
    const { blockCount, unitCount, chunkCount } = countsOf(layout);
    if (b.readUInt32BE(8) !== blockCount || b.readUInt32BE(12) !== unitCount || b.readUInt32BE(16) !== chunkCount) {
      bad(`counts ${b.readUInt32BE(8)}/${b.readUInt32BE(12)}/${b.readUInt32BE(16)} do not match the manifest's ${blockCount}/${unitCount}/${chunkCount}`);
    }
    const lookupBytes = b.readUInt8(20);
    if (lookupBytes < 4 || lookupBytes > 32) bad(`lookup key length ${lookupBytes} is outside 4..32`);
    if (b.length !== indexLength(layout, lookupBytes)) bad(`has ${b.length} bytes, its counts imply ${indexLength(layout, lookupBytes)}`);
    let at = INDEX_FIXED;
    const lookup = new Uint8Array(b.buffer, b.byteOffset + at, blockCount * lookupBytes);
    at += lookup.length;
    const unitStored = new Uint16Array(unitCount);
    for (let u = 0; u < unitCount; u++, at += 2) unitStored[u] = b.readUInt16BE(at);
    const chunkImageSha256 = new Uint8Array(b.buffer, b.byteOffset + at, chunkCount * 32);
    return new BlockIndex(layout, lookupBytes, lookup, unitStored, chunkImageSha256);
  }
}

/**
 * The unit store bytes of one chunk of image: each unit one raw deflate stream. Synchronous: a
 * thousand small deflates in flight at once would each hold a compressor's window (hundreds of MiB).
 */
export function compressUnits(image: Buffer, unitSize: number): Buffer[] {
  const units: Buffer[] = [];
  for (let at = 0; at < image.length; at += unitSize) units.push(deflateRawSync(image.subarray(at, at + unitSize)));
  return units;
}

/**
 * The image bytes of one fetched unit. Its bytes are not verified yet: output is capped at the
 * unit's size, and the caller checks every block against the signed index before using it.
 */
export function expandUnit(stored: Uint8Array, imageSize: number): Buffer {
  let out: Buffer;
  try {
    out = inflateRawSync(stored, { maxOutputLength: Math.max(1, imageSize) });
  } catch (err) {
    throw new BundleError('hashMismatch', `a fetched unit does not expand (${(err as Error).message})`);
  }
  if (out.length !== imageSize) throw new BundleError('hashMismatch', `a fetched unit expands to ${out.length} bytes, not ${imageSize}`);
  return out;
}

/** The index as stored in the bundle (gzip: the keys of zero and repeated blocks shrink to little). */
export function packIndex(index: BlockIndex): Buffer {
  return gzipSync(index.encode(), { level: 9 });
}

/** Expands a stored index whose sha256 already matched the signed manifest, refusing more than `rawSize` bytes. */
export function unpackIndex(stored: Buffer, layout: BlockLayout, what: string): BlockIndex {
  const longest = indexLength(layout, 32);
  let raw: Buffer;
  try {
    raw = gunzipSync(stored, { maxOutputLength: longest });
  } catch (err) {
    throw new BundleError('malformed', `${what} does not expand (${(err as Error).message})`);
  }
  return BlockIndex.decode(raw, layout, what);
}

/** The lookup key of a block: the first `lookupBytes` of its sha256. */
export function blockKey(block: Uint8Array, lookupBytes: number): Buffer {
  return createHash('sha256').update(block).digest().subarray(0, lookupBytes);
}
