import { BundleError } from './errors.js';

/*
 * The byte layout of a bundle (docs/bundle-format.md is the reference):
 *
 *   preamble         16 bytes   magic, format version, manifest length
 *   signature area   1284 bytes signature count + 16 fixed slots (key id, ed25519 signature)
 *   manifest         N bytes    JSON (UTF-8), padded with spaces; covered by every signature
 *   chunks           ...        each payload's chunks in order, each compressed on its own
 *   block indexes    ...        format 2 only: one per payload, in order (see block-index.ts)
 *
 * The signature area has a fixed size so that `bundle sign` rewrites a few hundred bytes in place
 * instead of copying a multi-GiB file, and so that chunk offsets never move when a signature is added.
 */

/** "\x89PIOTA\r\n": the high byte and CR LF reveal a file mangled by a text-mode transfer. */
export const MAGIC = Buffer.from([0x89, 0x50, 0x49, 0x4f, 0x54, 0x41, 0x0d, 0x0a]);
/** The newest format this agent reads and writes; it reads every version in FORMAT_VERSIONS. */
export const FORMAT_VERSION = 2;
/** 1: chunks only. 2: chunks compressed in units, plus a signed block index per payload (adaptive updates). */
export const FORMAT_VERSIONS: readonly number[] = [1, 2];
/** What `bundle create` makes unless told (docs/bundle-format.md, "Which format to make"). */
export const DEFAULT_CREATE_FORMAT = 2;
export const PREAMBLE_LENGTH = 16;

export const KEY_ID_BYTES = 16;
export const SIGNATURE_BYTES = 64;
export const SIGNATURE_SLOTS = 16;
const SLOT_BYTES = KEY_ID_BYTES + SIGNATURE_BYTES;
export const SIGNATURE_AREA_LENGTH = 4 + SIGNATURE_SLOTS * SLOT_BYTES;
export const MANIFEST_OFFSET = PREAMBLE_LENGTH + SIGNATURE_AREA_LENGTH;

/** A device holds the whole header in memory before it trusts it: this bounds that memory. */
export const MAX_MANIFEST_LENGTH = 4 * 1024 * 1024;
/** A verifier holds one stored and one expanded chunk at a time: this bounds that memory. */
export const MAX_CHUNK_SIZE = 64 * 1024 * 1024;
export const MIN_CHUNK_SIZE = 4096;
export const DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024;

/** Domain separation: a piota bundle signature can never be mistaken for a signature over anything else. */
const SIGNING_CONTEXT = Buffer.from('piota-bundle-v1\0', 'latin1');

/** The largest stored size a chunk of `imageSize` bytes may have (deflate's worst case is far below it). */
export function maxStoredSize(imageSize: number): number {
  return imageSize + Math.ceil(imageSize / 1024) + 1024;
}

export interface Preamble {
  formatVersion: number;
  manifestLength: number;
}

export function encodePreamble(manifestLength: number, formatVersion = 1): Buffer {
  const b = Buffer.alloc(PREAMBLE_LENGTH);
  MAGIC.copy(b, 0);
  b.writeUInt32BE(formatVersion, 8);
  b.writeUInt32BE(manifestLength, 12);
  return b;
}

/** Checks magic, format version and the manifest bound before anything else is read. */
export function decodePreamble(b: Buffer): Preamble {
  if (b.length < PREAMBLE_LENGTH || !b.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new BundleError('malformed', 'not a piota bundle (bad magic bytes at offset 0)');
  }
  const formatVersion = b.readUInt32BE(8);
  if (!FORMAT_VERSIONS.includes(formatVersion)) {
    throw new BundleError('unsupportedFormat', `bundle format version ${formatVersion} is not supported (this piota reads versions ${FORMAT_VERSIONS.join(' and ')})`);
  }
  const manifestLength = b.readUInt32BE(12);
  if (manifestLength === 0 || manifestLength > MAX_MANIFEST_LENGTH) {
    throw new BundleError('malformed', `manifest length ${manifestLength} is outside 1..${MAX_MANIFEST_LENGTH} bytes`);
  }
  return { formatVersion, manifestLength };
}

export interface SignatureEntry {
  /** Hex, see keyIdOf. */
  keyId: string;
  signature: Buffer;
}

export function encodeSignatureArea(entries: SignatureEntry[]): Buffer {
  if (entries.length > SIGNATURE_SLOTS) {
    throw new BundleError('signatureSlotsFull', `a bundle holds at most ${SIGNATURE_SLOTS} signatures`);
  }
  const b = Buffer.alloc(SIGNATURE_AREA_LENGTH);
  b.writeUInt32BE(entries.length, 0);
  entries.forEach((e, i) => {
    const at = 4 + i * SLOT_BYTES;
    Buffer.from(e.keyId, 'hex').copy(b, at);
    e.signature.copy(b, at + KEY_ID_BYTES);
  });
  return b;
}

export function decodeSignatureArea(b: Buffer): SignatureEntry[] {
  const count = b.readUInt32BE(0);
  if (count > SIGNATURE_SLOTS) {
    throw new BundleError('malformed', `signature area claims ${count} signatures (at most ${SIGNATURE_SLOTS})`);
  }
  const entries: SignatureEntry[] = [];
  for (let i = 0; i < count; i++) {
    const at = 4 + i * SLOT_BYTES;
    entries.push({
      keyId: b.subarray(at, at + KEY_ID_BYTES).toString('hex'),
      signature: Buffer.from(b.subarray(at + KEY_ID_BYTES, at + SLOT_BYTES)),
    });
  }
  return entries;
}

/** The bytes every signature covers: context, preamble (format version and length) and manifest. */
export function signedMessage(preamble: Buffer, manifest: Buffer): Buffer {
  return Buffer.concat([SIGNING_CONTEXT, preamble, manifest]);
}
