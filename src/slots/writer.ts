import { open, type FileHandle } from 'node:fs/promises';
import { constants } from 'node:fs';
import { describePartition, type SlotPartition } from './partition.js';
import { mountPointOf } from './mounts.js';
import { SlotError } from './slot-error.js';
import { ALIGN, isAligned } from './aligned-buffer.js';

export interface PartitionWriter {
  readonly partition: SlotPartition;
  /** Bytes the partition holds. */
  readonly size: number;
  /**
   * True when aligned writes bypass the page cache (O_DIRECT): the medium took it. Buffers from
   * AlignedBufferPool at block-aligned offsets go that way; anything else is written buffered.
   */
  readonly direct: boolean;
  /** Writes all of `data` at `offset`; refuses (before writing) anything past the end of the partition. */
  write(offset: number, data: Uint8Array): Promise<void>;
  /** fdatasync: when it resolves, every byte written so far is on the medium. */
  sync(): Promise<void>;
  /** Syncs and closes. */
  close(): Promise<void>;
}

export interface OpenForWriteOptions {
  /**
   * The size of the payload about to be written, when known: a payload larger than the partition
   * is refused here, before a byte is written.
   */
  payloadSize?: number;
}

/** Throws SlotError 'tooLarge' unless `length` bytes fit in `partition`. */
export function ensureFits(partition: SlotPartition, length: number): void {
  if (!Number.isSafeInteger(length) || length < 0) throw new SlotError('tooLarge', partition.path, `payload size ${length} is not a byte count`);
  if (length > partition.size) {
    throw new SlotError('tooLarge', partition.path, `payload of ${length} bytes does not fit in the partition (${partition.size} bytes)`);
  }
}

/**
 * Opens a slot partition for writing. Refuses a mounted partition twice over: by looking in
 * /proc/self/mountinfo, and for block devices by opening with O_EXCL, which the kernel refuses
 * (EBUSY) while the device is mounted or otherwise claimed. A regular file must already exist:
 * its size is the partition's size, so the writer never creates nor truncates it.
 */
export async function openPartitionForWrite(path: string, options: OpenForWriteOptions = {}): Promise<PartitionWriter> {
  const partition = await describePartition(path);
  if (options.payloadSize !== undefined) ensureFits(partition, options.payloadSize);
  const mountPoint = await mountPointOf(partition);
  if (mountPoint !== undefined) throw new SlotError('mounted', path, `refusing to write a mounted partition (mounted on ${mountPoint})`);
  const flags = constants.O_WRONLY | (partition.kind === 'block' ? constants.O_EXCL : 0);
  let fh: FileHandle;
  try {
    fh = await open(path, flags);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EBUSY') throw new SlotError('busy', path, 'the kernel refuses exclusive access: the device is mounted or in use');
    throw new SlotError('io', path, `cannot open for writing (${(err as Error).message})`);
  }
  return new FileWriter(partition, fh, await openDirect(path));
}

/**
 * A second descriptor of the same partition with O_DIRECT, for the large aligned writes: they go to
 * the medium without a copy into the page cache, which an image written once and read back from the
 * medium never needs, and without pushing the rest of the system out of memory. The first
 * descriptor keeps the exclusive claim (a second O_EXCL open would be refused) and takes the
 * unaligned writes. Where O_DIRECT is refused (EINVAL: tmpfs, some FUSE), every write is buffered.
 */
async function openDirect(path: string): Promise<FileHandle | null> {
  try {
    return await open(path, constants.O_WRONLY | constants.O_DIRECT);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EINVAL') return null;
    throw new SlotError('io', path, `cannot open for writing (${(err as Error).message})`);
  }
}

class FileWriter implements PartitionWriter {
  constructor(
    readonly partition: SlotPartition,
    private readonly fh: FileHandle,
    private readonly directFh: FileHandle | null,
  ) {}

  get direct(): boolean {
    return this.directFh !== null;
  }

  get size(): number {
    return this.partition.size;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new SlotError('io', this.partition.path, `bad write offset ${offset}`);
    if (offset + data.length > this.partition.size) {
      throw new SlotError(
        'tooLarge',
        this.partition.path,
        `a write of ${data.length} bytes at offset ${offset} would pass the end of the partition (${this.partition.size} bytes)`,
      );
    }
    const fh = this.directFh && isAligned(data) && offset % ALIGN === 0 && data.length % ALIGN === 0 ? this.directFh : this.fh;
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await fh.write(data, done, data.length - done, offset + done);
      if (bytesWritten === 0) throw new SlotError('io', this.partition.path, `write at offset ${offset + done} made no progress`);
      done += bytesWritten;
    }
  }

  /** O_DIRECT bypasses the page cache but not the device's own write cache: both descriptors flush. */
  async sync(): Promise<void> {
    await this.fh.datasync();
    await this.directFh?.datasync();
  }

  async close(): Promise<void> {
    try {
      await this.sync();
    } finally {
      await this.directFh?.close().catch(() => undefined);
      await this.fh.close();
    }
  }
}
