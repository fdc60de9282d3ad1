import { createHash } from 'node:crypto';
import { mkdir, open, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { writeFileDurably } from '../os/durable-file.js';

/*
 * The index of a slot: the first KEY_BYTES of the sha256 of every block, kept in the state
 * directory (docs/adaptive-updates.md, "The slot index"). It only says where a block was when the
 * index was built; every block reused from it is hashed again when it is read, so a stale index
 * costs misses, never a wrong byte.
 */

/** Bytes kept per block: enough for any bundle's lookup keys up to 8 bytes; the rest of a longer key is checked on reuse. */
export const KEY_BYTES = 8;
const MAGIC = Buffer.from('PIOTASX1', 'latin1');
const FIXED = 32;

export interface SlotIndex {
  blockSize: number;
  /** Bytes of the slot that were indexed. */
  size: number;
  /** blockCount × KEY_BYTES. */
  keys: Uint8Array;
  /** When it was built (ms since the epoch). */
  builtAt: number;
}

export function blockCountOf(index: SlotIndex): number {
  return index.keys.length / KEY_BYTES;
}

export interface BuildOptions {
  blockSize?: number;
  /** Read at most this many bytes per second (Node has no I/O priority call, so the build paces itself). 0: no limit. */
  bytesPerSecond?: number;
  signal?: AbortSignal;
}

const PIECE = 1024 * 1024;

/** Reads `size` bytes of `device` and hashes every block, paced to `bytesPerSecond`. */
export async function buildSlotIndex(device: string, size: number, options: BuildOptions = {}): Promise<SlotIndex> {
  const blockSize = options.blockSize ?? 4096;
  const rate = options.bytesPerSecond ?? 0;
  const blockCount = Math.ceil(size / blockSize);
  const keys = new Uint8Array(blockCount * KEY_BYTES);
  const fh = await open(device, 'r');
  const started = Date.now();
  try {
    const piece = Buffer.allocUnsafe(PIECE);
    for (let at = 0; at < size; ) {
      options.signal?.throwIfAborted();
      const want = Math.min(PIECE, size - at);
      const { bytesRead } = await fh.read(piece, 0, want, at);
      // A slot shorter than `size` reads as zeros past its end (what a write of the image would leave).
      if (bytesRead < want) piece.fill(0, bytesRead, want);
      for (let b = 0; b < want; b += blockSize) {
        const digest = createHash('sha256').update(piece.subarray(b, Math.min(b + blockSize, want))).digest();
        keys.set(digest.subarray(0, KEY_BYTES), ((at + b) / blockSize) * KEY_BYTES);
      }
      at += want;
      if (rate > 0) {
        const ahead = (at / rate) * 1000 - (Date.now() - started);
        if (ahead > 0) await sleep(ahead, undefined, { signal: options.signal });
      }
    }
  } finally {
    await fh.close();
  }
  return { blockSize, size, keys, builtAt: Date.now() };
}

export async function saveSlotIndex(path: string, index: SlotIndex): Promise<void> {
  const head = Buffer.alloc(FIXED);
  MAGIC.copy(head, 0);
  head.writeUInt32BE(index.blockSize, 8);
  head.writeUInt32BE(KEY_BYTES, 12);
  head.writeDoubleBE(index.size, 16);
  head.writeDoubleBE(index.builtAt, 24);
  await mkdir(dirname(path), { recursive: true });
  await writeFileDurably(path, Buffer.concat([head, index.keys]));
}

/** The saved index, or null when there is none or it is not one this agent wrote (then it is rebuilt). */
export async function loadSlotIndex(path: string): Promise<SlotIndex | null> {
  let b: Buffer;
  try {
    b = await readFile(path);
  } catch {
    return null;
  }
  const info = parseHead(b, b.length);
  return info && { ...info, keys: new Uint8Array(b.buffer, b.byteOffset + FIXED, b.length - FIXED) };
}

/** What a saved index describes, from its header alone (the keys of a 4 GiB slot are 8 MiB), or null as for loadSlotIndex. */
export async function slotIndexInfo(path: string): Promise<Omit<SlotIndex, 'keys'> | null> {
  try {
    const fh = await open(path, 'r');
    try {
      const head = Buffer.alloc(FIXED);
      const { bytesRead } = await fh.read(head, 0, FIXED, 0);
      return parseHead(head.subarray(0, bytesRead), (await stat(path)).size);
    } finally {
      await fh.close();
    }
  } catch {
    return null;
  }
}

function parseHead(b: Buffer, fileSize: number): Omit<SlotIndex, 'keys'> | null {
  if (b.length < FIXED || !b.subarray(0, 8).equals(MAGIC) || b.readUInt32BE(12) !== KEY_BYTES) return null;
  const blockSize = b.readUInt32BE(8);
  const size = b.readDoubleBE(16);
  if (!(blockSize > 0) || !Number.isSafeInteger(size) || fileSize !== FIXED + Math.ceil(size / blockSize) * KEY_BYTES) return null;
  return { blockSize, size, builtAt: b.readDoubleBE(24) };
}
