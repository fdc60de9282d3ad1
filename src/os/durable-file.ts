import { open, rename, unlink, mkdir } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';

export interface DurableWriteOptions {
  /** File mode for a new file (default 0o644). Use 0o600 for secrets. */
  mode?: number;
  /** Create the parent directory if missing (default false). */
  mkdirs?: boolean;
  /**
   * Keep the file being replaced under this name (same directory): a previous generation to fall back
   * to. A power cut between the two renames leaves only that previous file, never a mix.
   */
  keepPreviousAs?: string;
}

/**
 * Replaces `path` with `data` so that a power cut at any moment leaves either the old or the new
 * content, never a mix: write a temp file beside it, fsync, rename over, fsync the directory.
 * Every durable write in piota goes through here.
 */
export async function writeFileDurably(path: string, data: string | Uint8Array, options: DurableWriteOptions = {}): Promise<void> {
  const dir = dirname(path);
  if (options.mkdirs) await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', options.mode ?? 0o644);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fh.close();
  try {
    if (options.keepPreviousAs) {
      await rename(path, options.keepPreviousAs).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await syncDirectory(dir);
}

/** fsync a directory so that a rename or a new entry in it survives a power cut. */
export async function syncDirectory(dir: string): Promise<void> {
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } catch (err) {
    // Some filesystems (and FAT on some kernels) refuse fsync on a directory: nothing more we can do.
    if ((err as NodeJS.ErrnoException).code !== 'EINVAL' && (err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
  } finally {
    await dh.close();
  }
}
