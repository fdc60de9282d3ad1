import { createHash, type KeyObject } from 'node:crypto';
import { ByteReader, type ByteStream } from './byte-reader.js';
import { expandChunk } from './compression.js';
import { BundleError } from './errors.js';
import {
  MAGIC,
  MANIFEST_OFFSET,
  PREAMBLE_LENGTH,
  SIGNATURE_AREA_LENGTH,
  decodePreamble,
  decodeSignatureArea,
  signedMessage,
  type SignatureEntry,
} from './format.js';
import { keyIdOf, loadPublicKey, verifyMessage } from './keys.js';
import { parseManifest, type BundleManifest, type ChunkInfo } from './manifest.js';
import type { Compression } from './compression.js';

/** What a device trusts and is: the daemon builds this from its config and state. */
export interface DeviceTrust {
  /** PEM SPKI texts of the keys whose signatures this device accepts. */
  trustedKeys: string[];
  /** The device's model; the bundle must list it in `compatible`. */
  model: string;
  /** The device's anti-rollback floor; a bundle with a lower security version is refused. */
  securityVersion: number;
  /** The largest chunk (image bytes) the device accepts: a chunk is held in memory while its hash is checked. */
  maxChunkBytes?: number;
}

/** DeviceTrust with the device checks optional: `piota bundle verify` without --model. */
export interface VerifyPolicy {
  trustedKeys: string[];
  model?: string;
  securityVersion?: number;
  maxChunkBytes?: number;
}

export interface VerifiedHeader {
  /** The signed manifest, with every chunk's bundleOffset worked out. */
  manifest: BundleManifest;
  /** Bytes before the first chunk (= manifest.chunks[0].bundleOffset). */
  headerLength: number;
  /** Total bytes of the bundle (what a download should receive). */
  bundleSize: number;
  /** Id of the trusted key whose signature held. */
  keyId: string;
  /**
   * The source's bytes after the header (starts at chunk 0). Consume it with verifyChunks, or
   * call `rest.return()` to release the source (an HTTP response, a file).
   */
  rest: ByteStream;
}

export interface VerifiedChunk {
  index: number;
  /** The target partition, e.g. 'rootfs'. */
  payload: string;
  /** Where `data` goes in the payload's image. */
  imageOffset: number;
  /** The chunk's expanded image bytes (a fresh buffer the caller may keep). */
  data: Buffer;
}

interface TrustedKey {
  keyId: string;
  key: KeyObject;
}

function trustedKeysOf(pems: string[]): TrustedKey[] {
  if (pems.length === 0) throw new BundleError('invalidArgument', 'no trusted keys given: a bundle can only be accepted with at least one');
  return pems.map((pem, i) => {
    const key = loadPublicKey(pem, `trusted key ${i + 1}`);
    return { keyId: keyIdOf(key), key };
  });
}

/**
 * Returns the id of a trusted key whose signature holds. Which error, when none does, tells the
 * operator what to fix: no signature at all, only unknown keys, or a trusted key's signature broken.
 */
function checkSignatures(message: Buffer, entries: SignatureEntry[], trusted: TrustedKey[]): string {
  if (entries.length === 0) throw new BundleError('unsigned', 'the bundle carries no signature (sign it with piota bundle sign)');
  let broken: string | undefined;
  for (const entry of entries) {
    const key = trusted.find((t) => t.keyId === entry.keyId);
    if (!key) continue;
    if (verifyMessage(key.key, message, entry.signature)) return key.keyId;
    broken = entry.keyId;
  }
  if (broken) throw new BundleError('signatureInvalid', `the signature by trusted key ${broken} does not match the bundle header`);
  const ids = entries.map((e) => e.keyId).join(', ');
  throw new BundleError('untrustedKey', `signed only by keys this device does not trust (${ids}); trusted: ${trusted.map((t) => t.keyId).join(', ')}`);
}

function truncatedHeader(at: number, wanted: number): BundleError {
  return new BundleError('truncated', `the bundle ends at byte ${at}, inside its header (which needs at least ${wanted} bytes)`);
}

/**
 * Reads the header from the start of a bundle and checks it against `policy`. Nothing but the
 * preamble and the signature area is interpreted before a trusted signature holds over the manifest.
 */
export async function verifyHeader(source: AsyncIterable<Uint8Array>, policy: VerifyPolicy): Promise<VerifiedHeader> {
  const trusted = trustedKeysOf(policy.trustedKeys);
  const reader = new ByteReader(source);
  try {
    const preamble = Buffer.alloc(PREAMBLE_LENGTH);
    const got = await reader.fill(preamble);
    if (got < PREAMBLE_LENGTH) {
      const seen = Math.min(got, MAGIC.length);
      if (!preamble.subarray(0, seen).equals(MAGIC.subarray(0, seen))) decodePreamble(preamble);
      throw truncatedHeader(got, MANIFEST_OFFSET);
    }
    const { manifestLength } = decodePreamble(preamble);
    const headerLength = MANIFEST_OFFSET + manifestLength;
    const signatureArea = Buffer.alloc(SIGNATURE_AREA_LENGTH);
    if ((await reader.fill(signatureArea)) < SIGNATURE_AREA_LENGTH) throw truncatedHeader(reader.position, headerLength);
    const manifestBytes = Buffer.alloc(manifestLength);
    if ((await reader.fill(manifestBytes)) < manifestLength) throw truncatedHeader(reader.position, headerLength);

    const keyId = checkSignatures(signedMessage(preamble, manifestBytes), decodeSignatureArea(signatureArea), trusted);
    const manifest = parseManifest(manifestBytes);
    if (policy.model !== undefined && !manifest.compatible.includes(policy.model)) {
      throw new BundleError('incompatible', `the bundle is for ${manifest.compatible.join(', ')}, not for model ${policy.model}`);
    }
    if (policy.securityVersion !== undefined && manifest.securityVersion < policy.securityVersion) {
      throw new BundleError(
        'downgrade',
        `the bundle's security version ${manifest.securityVersion} is lower than the device's ${policy.securityVersion}`,
      );
    }
    const max = policy.maxChunkBytes;
    const big = max === undefined ? undefined : manifest.payloads.find((p) => p.chunkSize > max);
    if (big) {
      throw new BundleError('chunkTooLarge', `the ${big.name} payload has chunks of ${big.chunkSize} bytes; this device accepts at most ${max} (maxChunkBytes)`);
    }
    return { manifest, headerLength, bundleSize: manifest.bundleSize, keyId, rest: reader.rest() };
  } catch (err) {
    await reader.close();
    throw err;
  }
}

/**
 * Reads and verifies the header from the start of the bundle stream; refuses (BundleError) before
 * any payload byte unless a trusted signature holds, the model is compatible and the security
 * version is not lower than the device's.
 */
export async function readVerifiedHeader(source: AsyncIterable<Uint8Array>, trust: DeviceTrust): Promise<VerifiedHeader> {
  if (typeof trust.model !== 'string' || trust.model === '') throw new BundleError('invalidArgument', 'DeviceTrust.model is required');
  if (!Number.isSafeInteger(trust.securityVersion) || trust.securityVersion < 0) {
    throw new BundleError('invalidArgument', `DeviceTrust.securityVersion must be a whole number >= 0, got ${trust.securityVersion}`);
  }
  return verifyHeader(source, trust);
}

async function expand(stored: Buffer, chunk: ChunkInfo, compression: Compression): Promise<Buffer> {
  try {
    return await expandChunk(compression, stored, chunk.imageSize);
  } catch (err) {
    if (err instanceof BundleError) throw new BundleError(err.code, `chunk ${chunk.index} of ${chunk.payload}: ${err.message}`);
    throw err;
  }
}

/** Reads chunk `chunk`'s stored bytes and checks their hash (and, for the last chunk, that nothing follows). */
async function readStoredChunk(reader: ByteReader, header: VerifiedHeader, chunk: ChunkInfo): Promise<Buffer> {
  const stored = Buffer.allocUnsafe(chunk.storedSize);
  const hash = createHash('sha256');
  const got = await reader.fill(stored, (piece) => hash.update(piece));
  const where = `chunk ${chunk.index} of ${chunk.payload} (bundle bytes ${chunk.bundleOffset}..${chunk.bundleOffset + chunk.storedSize})`;
  if (got < chunk.storedSize) {
    throw new BundleError('truncated', `the bundle ends at byte ${chunk.bundleOffset + got}, inside ${where}; the whole bundle is ${header.bundleSize} bytes`);
  }
  const digest = hash.digest('hex');
  if (digest !== chunk.sha256) throw new BundleError('hashMismatch', `${where} has sha256 ${digest}, the signed manifest says ${chunk.sha256}`);
  if (chunk.index === header.manifest.chunks.length - 1) await refuseTrailingBytes(reader, header);
  return stored;
}

/**
 * Yields each chunk's expanded image bytes once that chunk's sha256 holds; fails at once on a bad
 * chunk (hashMismatch), a short stream (truncated) or bytes after the last chunk (malformed), having
 * yielded every chunk before it. `source` starts at the bundle offset of chunk `fromChunk`, so a
 * download can resume with an HTTP Range request after a restart.
 *
 * While the caller writes one chunk, the next one is already being read, hashed and expanded, so the
 * download keeps flowing; at most two chunks (stored and expanded) are held at a time.
 */
export async function* verifyChunks(
  header: VerifiedHeader,
  source: AsyncIterable<Uint8Array>,
  fromChunk = 0,
): AsyncGenerator<VerifiedChunk> {
  const { chunks, payloads } = header.manifest;
  const compressionOf = new Map(payloads.map((p) => [p.name, p.compression]));
  const reader = new ByteReader(source);
  // The next chunk is read, hash-checked and expanded while the caller writes this one.
  const readAhead = (index: number): Promise<Buffer> => {
    const chunk = chunks[index];
    const next = readStoredChunk(reader, header, chunk).then((stored) =>
      expand(stored, chunk, compressionOf.get(chunk.payload)!),
    );
    next.catch(() => undefined); // awaited in turn below; this keeps an early failure from counting as unhandled
    return next;
  };
  let pending: Promise<Buffer> | undefined;
  try {
    if (!Number.isSafeInteger(fromChunk) || fromChunk < 0 || fromChunk > chunks.length) {
      throw new BundleError('invalidArgument', `fromChunk must be a chunk index from 0 to ${chunks.length}, got ${fromChunk}`);
    }
    if (fromChunk === chunks.length) await refuseTrailingBytes(reader, header);
    pending = fromChunk < chunks.length ? readAhead(fromChunk) : undefined;
    for (let i = fromChunk; i < chunks.length; i++) {
      const chunk = chunks[i];
      const data = await pending!;
      pending = i + 1 < chunks.length ? readAhead(i + 1) : undefined;
      yield { index: i, payload: chunk.payload, imageOffset: chunk.imageOffset, data };
    }
  } finally {
    await reader.close();
    await pending?.catch(() => undefined);
  }
}

/** A bundle longer than its manifest says is not the file that was signed: say so before the last chunk lands. */
async function refuseTrailingBytes(reader: ByteReader, header: VerifiedHeader): Promise<void> {
  if (!(await reader.atEnd())) {
    throw new BundleError('malformed', `the bundle goes on past its end at byte ${header.bundleSize} (the signed manifest lists no more chunks)`);
  }
}
