import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';

/**
 * Writes a small stand-in for a firmware image: a readable banner, pseudo-random blocks (which do
 * not compress) and runs of zeros (which do, as free space on a real rootfs does). Deterministic
 * for a given label, so two demo runs make the same image.
 */
export async function writeDemoImage(path: string, label: string, bytes: number): Promise<void> {
  const fh = await open(path, 'w');
  try {
    const banner = Buffer.alloc(4096);
    banner.write(`piota demo image: ${label}\n`);
    await fh.write(banner, 0, banner.length, 0);
    let seed = createHash('sha256').update(label).digest();
    const block = Buffer.alloc(64 * 1024);
    for (let offset = banner.length; offset < bytes; offset += block.length) {
      const n = Math.min(block.length, bytes - offset);
      // Every other 256 KiB is zeros; the rest is a sha256 chain (cheap pseudo-random data).
      if (Math.floor(offset / (256 * 1024)) % 2 === 0) {
        for (let i = 0; i < n; i += 32) {
          seed = createHash('sha256').update(seed).digest();
          seed.copy(block, i, 0, Math.min(32, n - i));
        }
      } else {
        block.fill(0, 0, n);
      }
      await fh.write(block, 0, n, offset);
    }
  } finally {
    await fh.close();
  }
}
