import { open, type FileHandle } from 'node:fs/promises';
import { constants } from 'node:fs';
import { createHash } from 'node:crypto';
import { describePartition } from './partition.js';
import { SlotError } from './slot-error.js';
import { ALIGN, allocAligned } from './aligned-buffer.js';

/** One read: large enough that the medium streams, a multiple of any logical block size (512 or 4096). */
const CHUNK = 4 << 20;

export interface ReadBack {
  sha256: string;
  /** true when the bytes came from the medium through O_DIRECT, false for the buffered fallback. */
  direct: boolean;
}

/** sha256 (hex) of the first `length` bytes of a slot partition, read from the medium. */
export async function hashPartition(path: string, length: number, signal?: AbortSignal): Promise<string> {
  return (await readBackHash(path, length, signal)).sha256;
}

/**
 * Reads the first `length` bytes of a partition and hashes them, in constant memory.
 *
 * A block device is read with O_DIRECT into a `WebAssembly.Memory` buffer (page aligned, which
 * O_DIRECT requires), so the bytes come from the medium and not from the page cache that the
 * write just filled. A regular file (the simulator's slots) is tried with O_DIRECT too; where the
 * filesystem refuses it (EINVAL, as older tmpfs does) it is read buffered: Node has no
 * posix_fadvise(DONTNEED) to drop the cache, and for a file there is no separate medium under the
 * simulated one, so the buffered read is the documented fallback. A block device that refuses
 * O_DIRECT is an error, never a silent fallback.
 */
export async function readBackHash(path: string, length: number, signal?: AbortSignal): Promise<ReadBack> {
  const partition = await describePartition(path);
  if (!Number.isSafeInteger(length) || length < 0) throw new SlotError('io', path, `cannot read back ${length} bytes`);
  if (length > partition.size) {
    throw new SlotError('tooLarge', path, `cannot read back ${length} bytes from a partition of ${partition.size} bytes`);
  }
  const { fh, direct } = await openForReadBack(path, partition.kind === 'block');
  try {
    return { sha256: await hashPrefix(fh, path, length, direct, signal), direct };
  } finally {
    await fh.close();
  }
}

async function openForReadBack(path: string, mustBeDirect: boolean): Promise<{ fh: FileHandle; direct: boolean }> {
  try {
    return { fh: await open(path, constants.O_RDONLY | constants.O_DIRECT), direct: true };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' || mustBeDirect) throw new SlotError('io', path, `cannot open for read-back with O_DIRECT (${(err as Error).message})`);
  }
  try {
    return { fh: await open(path, constants.O_RDONLY), direct: false };
  } catch (err) {
    throw new SlotError('io', path, `cannot open for read-back (${(err as Error).message})`);
  }
}

/**
 * Two aligned buffers in turn: while one is hashed (on this thread), the next read runs on libuv's
 * pool, so the medium and the hash overlap and the read-back takes about the longer of the two.
 */
async function hashPrefix(fh: FileHandle, path: string, length: number, direct: boolean, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  const buffers = [allocAligned(CHUNK), allocAligned(CHUNK)];
  const readAt = async (buffer: Buffer, position: number): Promise<number> => {
    const wanted = Math.min(CHUNK, length - position);
    const request = direct ? Math.ceil(wanted / ALIGN) * ALIGN : wanted;
    let bytesRead: number;
    try {
      ({ bytesRead } = await fh.read(buffer, 0, request, position));
    } catch (err) {
      throw new SlotError('io', path, `read-back failed at offset ${position} (${(err as Error).message})`);
    }
    if (bytesRead === 0) throw new SlotError('shortRead', path, `read-back ended at offset ${position}, expected ${length} bytes`);
    const used = Math.min(bytesRead, wanted);
    // A short O_DIRECT read ends on a block boundary; carrying on from an unaligned position would fail.
    if (direct && used < wanted && (position + used) % ALIGN !== 0) {
      throw new SlotError('shortRead', path, `read-back stopped at unaligned offset ${position + used}, expected ${length} bytes`);
    }
    return used;
  };
  let position = 0;
  let turn = 0;
  let next: Promise<number> | null = length > 0 ? readAt(buffers[0], 0) : null;
  try {
    while (next) {
      const used = await next;
      const current = buffers[turn];
      position += used;
      // A read-back of gigabytes takes minutes on a Pi: a stop (SIGTERM) ends it between reads.
      signal?.throwIfAborted();
      turn ^= 1;
      next = position < length ? readAt(buffers[turn], position) : null;
      hash.update(current.subarray(0, used));
    }
  } finally {
    // Never leave a read running into a buffer after an error.
    await next?.catch(() => undefined);
  }
  return hash.digest('hex');
}
