import { open, type FileHandle } from 'node:fs/promises';
import type { SlotReader } from './install.js';

/** Reads a slot partition (a block device or an image file); bytes past its end read as zeros. */
export async function openSlotReader(path: string): Promise<SlotReader & { close(): Promise<void> }> {
  const fh: FileHandle = await open(path, 'r');
  return {
    // Straight into the caller's chunk buffer: one read per run of neighbouring blocks, no copy.
    async readInto(into, at, length, position) {
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(into, at + done, length - done, position + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      if (done < length) into.fill(0, at + done, at + length);
    },
    close: () => fh.close(),
  };
}
