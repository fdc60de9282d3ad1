import { open } from 'node:fs/promises';

const BLOCK = 4 * 1024 * 1024;

/**
 * Copies `length` bytes from `src` at `srcOffset` to `dst` at `dstOffset`, 4 MiB at a time (never
 * the whole partition in memory). All-zero blocks are skipped: the destination is a fresh sparse
 * image whose unwritten bytes read as zeros, and stays sparse. The source is opened read-only.
 */
export async function copyRange(src: string, srcOffset: number, dst: string, dstOffset: number, length: number): Promise<void> {
  const input = await open(src, 'r');
  const output = await open(dst, 'r+');
  try {
    const buf = Buffer.alloc(BLOCK);
    const zeros = Buffer.alloc(BLOCK);
    for (let done = 0; done < length; ) {
      const want = Math.min(BLOCK, length - done);
      const { bytesRead } = await input.read(buf, 0, want, srcOffset + done);
      if (bytesRead === 0) throw new Error(`${src}: ended ${length - done} bytes early`);
      const chunk = buf.subarray(0, bytesRead);
      if (!chunk.equals(zeros.subarray(0, bytesRead))) await output.write(chunk, 0, bytesRead, dstOffset + done);
      done += bytesRead;
    }
    await output.sync();
  } finally {
    await input.close();
    await output.close();
  }
}
