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
  /** The chunk's expanded image bytes: the caller's to keep, unless it hands them back with `release`. */
  data: Buffer;
  /** Hands `data` back to the VerifyChunksOptions.buffers pool once the caller is done with it (a no-op without a pool). */
  release(): void;
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
    const { manifestLength, formatVersion } = decodePreamble(preamble);
    const headerLength = MANIFEST_OFFSET + manifestLength;
    const signatureArea = Buffer.alloc(SIGNATURE_AREA_LENGTH);
    if ((await reader.fill(signatureArea)) < SIGNATURE_AREA_LENGTH) throw truncatedHeader(reader.position, headerLength);
    const manifestBytes = Buffer.alloc(manifestLength);
    if ((await reader.fill(manifestBytes)) < manifestLength) throw truncatedHeader(reader.position, headerLength);

    const keyId = checkSignatures(signedMessage(preamble, manifestBytes), decodeSignatureArea(signatureArea), trusted);
    const manifest = parseManifest(manifestBytes, formatVersion);
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

/**
 * Where the verifier reads a chunk's stored bytes: a pool lets the daemon reuse a few aligned
 * buffers (O_DIRECT) for a whole install. `give` gets back each buffer the verifier or the caller
 * (VerifiedChunk.release) is done with.
 */
export interface ChunkBuffers {
  take(size: number): Buffer;
  give(buffer: Buffer): void;
}

export interface VerifyChunksOptions {
  /**
   * Chunks read, hash-checked and expanded ahead of the one the caller holds (default 1). Each holds
   * one chunk in memory; two let the network, the hash and the caller's write of three chunks overlap.
   */
  readAhead?: number;
  /** Default: a fresh buffer for every chunk. */
  buffers?: ChunkBuffers;
  /** Hashes a chunk's stored bytes (sha256, hex), e.g. on a worker thread. Default: sha256Of. */
  sha256?: (bytes: Buffer) => Promise<string>;
}

const freshBuffers: ChunkBuffers = { take: (size) => Buffer.allocUnsafe(size), give: () => undefined };

/**
 * sha256 (hex) of one chunk, on this thread. The daemon passes its own (VerifyChunksOptions.sha256):
 * a worker thread that hashes its shared buffers in place while this thread receives the next chunk.
 */
export function sha256Of(bytes: Buffer): Promise<string> {
  return Promise.resolve(createHash('sha256').update(bytes).digest('hex'));
}

interface StoredChunk {
  stored: Buffer;
  /** The last chunk only: bytes follow it in the stream. */
  trailing: boolean;
}

/** Reads chunk `chunk`'s stored bytes (and, for the last chunk, whether anything follows them). */
async function readStoredChunk(reader: ByteReader, header: VerifiedHeader, chunk: ChunkInfo, buffers: ChunkBuffers): Promise<StoredChunk> {
  const stored = buffers.take(chunk.storedSize);
  const got = await reader.fill(stored);
  if (got < chunk.storedSize) {
    buffers.give(stored);
    throw new BundleError('truncated', `the bundle ends at byte ${chunk.bundleOffset + got}, inside ${describeChunk(chunk)}; the whole bundle is ${header.bundleSize} bytes`);
  }
  // Format 2: the unit stores and block indexes follow the chunks; a full install stops before them.
  const trailing = chunk.index === header.manifest.chunks.length - 1 && header.manifest.formatVersion === 1 && !(await reader.atEnd());
  return { stored, trailing };
}

function describeChunk(chunk: ChunkInfo): string {
  return `chunk ${chunk.index} of ${chunk.payload} (bundle bytes ${chunk.bundleOffset}..${chunk.bundleOffset + chunk.storedSize})`;
}

/** Checks a read chunk's hash, then expands it: no byte is expanded (or handed out) before its hash holds. */
async function checkAndExpand(read: StoredChunk, header: VerifiedHeader, chunk: ChunkInfo, compression: Compression, options: Required<VerifyChunksOptions>): Promise<Buffer> {
  const { stored } = read;
  const { buffers } = options;
  try {
    const digest = await options.sha256(stored);
    if (digest !== chunk.sha256) throw new BundleError('hashMismatch', `${describeChunk(chunk)} has sha256 ${digest}, the signed manifest says ${chunk.sha256}`);
    if (read.trailing) throw trailingBytes(header);
    const data = await expand(stored, chunk, compression);
    if (data !== stored) buffers.give(stored);
    return data;
  } catch (err) {
    buffers.give(stored);
    throw err;
  }
}

/**
 * Yields each chunk's expanded image bytes once that chunk's sha256 holds; fails at once on a bad
 * chunk (hashMismatch), a short stream (truncated) or bytes after the last chunk (malformed), having
 * yielded every chunk before it. `source` starts at the bundle offset of chunk `fromChunk`, so a
 * download can resume with an HTTP Range request after a restart.
 *
 * While the caller writes one chunk, the next `readAhead` are already being read (in order, on this
 * thread), hashed (by `options.sha256`) and expanded (gzip: on libuv's pool), so the download keeps flowing; at most
 * `readAhead + 1` chunks are held at a time, whatever the bundle's size.
 */
export async function* verifyChunks(
  header: VerifiedHeader,
  source: AsyncIterable<Uint8Array>,
  fromChunk = 0,
  options: VerifyChunksOptions = {},
): AsyncGenerator<VerifiedChunk> {
  const { chunks, payloads } = header.manifest;
  const compressionOf = new Map(payloads.map((p) => [p.name, p.compression]));
  const settings: Required<VerifyChunksOptions> = {
    readAhead: options.readAhead ?? 1,
    buffers: options.buffers ?? freshBuffers,
    sha256: options.sha256 ?? sha256Of,
  };
  const { buffers, readAhead } = settings;
  const reader = new ByteReader(source);
  // Reads follow each other on the one stream; the checks of read chunks run beside the next reads.
  let lastRead: Promise<unknown> = Promise.resolve();
  const launch = (index: number): Promise<Buffer> => {
    const chunk = chunks[index];
    const read = lastRead.then(() => readStoredChunk(reader, header, chunk, buffers));
    lastRead = read;
    const checked = read.then((r) => checkAndExpand(r, header, chunk, compressionOf.get(chunk.payload)!, settings));
    read.catch(() => undefined);
    checked.catch(() => undefined); // awaited in turn below; this keeps an early failure from counting as unhandled
    return checked;
  };
  const queue: Promise<Buffer>[] = [];
  try {
    if (!Number.isSafeInteger(fromChunk) || fromChunk < 0 || fromChunk > chunks.length) {
      throw new BundleError('invalidArgument', `fromChunk must be a chunk index from 0 to ${chunks.length}, got ${fromChunk}`);
    }
    if (!Number.isSafeInteger(readAhead) || readAhead < 1) throw new BundleError('invalidArgument', `readAhead must be a whole number >= 1, got ${readAhead}`);
    if (fromChunk === chunks.length && header.manifest.formatVersion === 1 && !(await reader.atEnd())) throw trailingBytes(header);
    let launched = fromChunk;
    while (launched < chunks.length && queue.length < readAhead) queue.push(launch(launched++));
    for (let i = fromChunk; i < chunks.length; i++) {
      const chunk = chunks[i];
      const data = await queue.shift()!;
      if (launched < chunks.length) queue.push(launch(launched++));
      yield { index: i, payload: chunk.payload, imageOffset: chunk.imageOffset, data, release: () => buffers.give(data) };
    }
  } finally {
    await reader.close();
    for (const pending of queue) await pending.then((data) => buffers.give(data), () => undefined);
  }
}

/** A bundle longer than its manifest says is not the file that was signed: say so before the last chunk lands. */
function trailingBytes(header: VerifiedHeader): BundleError {
  return new BundleError('malformed', `the bundle goes on past its end at byte ${header.bundleSize} (the signed manifest lists no more chunks)`);
}
