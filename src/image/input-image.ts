import { open } from 'node:fs/promises';
import { ImageError } from './image-error.js';
import { readFat } from './fat-files.js';
import { isExtended, isFat, readMbr, type MbrPartition, type MbrTable } from './mbr.js';

/** A Raspberry Pi OS style image: one FAT boot partition and one ext4 root, as convert takes it. */
export interface InputImage {
  path: string;
  table: MbrTable;
  boot: MbrPartition;
  root: MbrPartition;
  /** The root ext4 file system's own size (it may be smaller than its partition). */
  rootFsBytes: number;
  cmdline: string;
  configTxt: string;
}

/** ext4's superblock: 1024 bytes in, magic 0xEF53 at 56, block count (lo) at 4, log block size at 24. */
export async function ext4Size(path: string, offset: number): Promise<number | undefined> {
  const fh = await open(path, 'r');
  try {
    const sb = Buffer.alloc(1024);
    await fh.read(sb, 0, 1024, offset + 1024);
    if (sb.readUInt16LE(56) !== 0xef53) return undefined;
    const blocks = sb.readUInt32LE(4) + (sb.readUInt32LE(0x150) * 2 ** 32 || 0) * ((sb.readUInt32LE(0x60) & 0x80) !== 0 ? 1 : 0);
    return blocks * 1024 * 2 ** sb.readUInt32LE(24);
  } finally {
    await fh.close();
  }
}

/**
 * Reads and checks the input without writing to it: an MBR with exactly a FAT boot partition
 * (with cmdline.txt and config.txt) and an ext4 root. Anything else is refused with the reason.
 */
export async function readInputImage(path: string): Promise<InputImage> {
  const table = await readMbr(path);
  const parts = table.partitions.filter((p) => !isExtended(p.type));
  if (parts.length === 7 && parts[6]!.number === 7) {
    throw new ImageError('refused', `${path}: already an A/B image (7 partitions); convert takes a Raspberry Pi OS image (a FAT boot and an ext4 root partition)`);
  }
  const describe = parts.map((p) => `${p.number}: type ${p.type.toString(16).padStart(2, '0')}`).join(', ') || 'none';
  if (parts.length !== 2 || !isFat(parts[0]!.type) || parts[1]!.type !== 0x83) {
    throw new ImageError('refused', `${path}: expected two partitions, a FAT boot partition then a Linux root (types 0c and 83), as in Raspberry Pi OS images; found ${describe}`);
  }
  const [boot, root] = parts as [MbrPartition, MbrPartition];
  const rootFsBytes = await ext4Size(path, root.start);
  if (rootFsBytes === undefined) throw new ImageError('refused', `${path}: partition 2 holds no ext4 file system (no ext4 superblock)`);
  const vol = { image: path, offset: boot.start };
  const cmdline = await readFat(vol, 'cmdline.txt');
  const configTxt = await readFat(vol, 'config.txt');
  if (cmdline === undefined || configTxt === undefined) {
    throw new ImageError('refused', `${path}: partition 1 is not a Raspberry Pi boot partition (no ${cmdline === undefined ? 'cmdline.txt' : 'config.txt'} on it)`);
  }
  return { path, table, boot, root, rootFsBytes, cmdline: cmdline.toString('utf8'), configTxt: configTxt.toString('utf8') };
}
