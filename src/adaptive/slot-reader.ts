import { open, type FileHandle } from 'node:fs/promises';
import type { SlotReader } from './install.js';

/** Reads a slot partition (a block device or an image file); bytes past its end read as zeros. */
export async function openSlotReader(path: string): Promise<SlotReader & { close(): Promise<void> }> {
  const fh: FileHandle = await open(path, 'r');
  return {
    async read(offset, length) {
      const b = Buffer.alloc(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(b, done, length - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return b;
    },
    close: () => fh.close(),
  };
}
