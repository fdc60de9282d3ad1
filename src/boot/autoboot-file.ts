import { open, readFile, stat } from 'node:fs/promises';
import { writeFileDurably } from '../os/durable-file.js';
import { BootError } from './backend.js';
import { parseAutoboot, serializeAutoboot, type AutobootConfig } from './autoboot.js';

export async function readAutoboot(path: string): Promise<AutobootConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new BootError('io', `${path}: cannot read autoboot.txt (${(err as Error).message})`);
  }
  return parseAutoboot(text, path);
}

/**
 * Replaces autoboot.txt so that a power cut at any moment leaves a valid file.
 *
 * The boot partition is FAT, which has no atomic rename. Every file piota writes has the same
 * length (AUTOBOOT_LENGTH, under one 512-byte sector), so once the file has that length a rewrite
 * is a same-length write at offset 0 plus fdatasync: the size in the directory entry never
 * changes, and the one data sector is written whole or not at all. Only the first rewrite of a
 * file of another length (as the image builder wrote it) goes through writeFileDurably (temp,
 * fsync, rename, fsync dir), the best FAT offers; every later one is in place.
 * The result is read back and parsed before this resolves.
 */
export async function writeAutoboot(path: string, config: AutobootConfig): Promise<void> {
  const text = serializeAutoboot(config);
  const data = Buffer.from(text, 'utf8');
  const current = await stat(path).catch(() => undefined);
  try {
    if (current?.isFile() && current.size === data.length) {
      const fh = await open(path, 'r+');
      try {
        await fh.write(data, 0, data.length, 0);
        await fh.datasync();
      } finally {
        await fh.close();
      }
    } else {
      await writeFileDurably(path, data);
    }
  } catch (err) {
    throw new BootError('io', `${path}: cannot rewrite autoboot.txt (${(err as Error).message})`);
  }
  const back = await readAutoboot(path);
  const wanted = parseAutoboot(text, path);
  if (back.bootPartition !== wanted.bootPartition || back.trybootPartition !== wanted.trybootPartition) {
    throw new BootError('io', `${path}: autoboot.txt reads back differently from what was written`);
  }
}
