import { open } from 'node:fs/promises';
import { ImageError } from './image-error.js';

export const SECTOR = 512;

/** One partition of an MBR disk: numbered as Linux numbers them (1-4 primary, 5.. logical). */
export interface MbrPartition {
  number: number;
  /** The MBR type byte, e.g. 0x0c FAT32 LBA, 0x83 Linux, 0x05 extended. */
  type: number;
  /** Byte offset and length in the image. */
  start: number;
  size: number;
}

export interface MbrTable {
  /** The disk identifier as 8 lower-case hex digits: PARTUUIDs are `<diskId>-<NN>`. */
  diskId: string;
  partitions: MbrPartition[];
}

const EXTENDED = new Set([0x05, 0x0f, 0x85]);
export const isExtended = (type: number): boolean => EXTENDED.has(type);
export const isFat = (type: number): boolean => [0x01, 0x04, 0x06, 0x0b, 0x0c, 0x0e].includes(type);

/** `<diskId>-<NN>`, as the kernel and blkid name an MBR partition's PARTUUID. */
export function partUuid(diskId: string, number: number): string {
  return `${diskId}-${number.toString(16).padStart(2, '0')}`;
}

/**
 * Reads the partition table of an image, read-only, with the logical partitions of an extended
 * one. Anything else than an MBR (a GPT, no boot signature, entries past the end) is refused with
 * the reason; `what` names the image in messages.
 */
export async function readMbr(path: string, what = path): Promise<MbrTable> {
  const fh = await open(path, 'r').catch((err: NodeJS.ErrnoException) => {
    throw new ImageError('refused', `${what}: cannot open it (${err.code ?? err.message})`);
  });
  try {
    const size = (await fh.stat()).size;
    const sector = async (lba: number): Promise<Buffer> => {
      const b = Buffer.alloc(SECTOR);
      const { bytesRead } = await fh.read(b, 0, SECTOR, lba * SECTOR);
      if (bytesRead < SECTOR) throw new ImageError('refused', `${what}: too short for a disk image (${size} bytes)`);
      return b;
    };
    const mbr = await sector(0);
    if (mbr.readUInt16LE(510) !== 0xaa55) throw new ImageError('refused', `${what}: no MBR partition table (no 55 AA boot signature in its first sector)`);
    const entries = (b: Buffer) =>
      [0, 1, 2, 3].map((i) => {
        const at = 446 + i * 16;
        return { type: b[at + 4]!, lba: b.readUInt32LE(at + 8), sectors: b.readUInt32LE(at + 12) };
      });
    const primary = entries(mbr);
    if (primary.some((e) => e.type === 0xee)) throw new ImageError('refused', `${what}: a GPT disk (protective MBR); piota image convert takes an MBR image such as Raspberry Pi OS's`);
    const partitions: MbrPartition[] = [];
    const add = (number: number, type: number, lba: number, sectors: number) => {
      const p = { number, type, start: lba * SECTOR, size: sectors * SECTOR };
      if (p.start + p.size > size) {
        throw new ImageError('refused', `${what}: partition ${number} ends at byte ${p.start + p.size}, past the end of the image (${size} bytes): a truncated image?`);
      }
      partitions.push(p);
    };
    primary.forEach((e, i) => {
      if (e.type !== 0 && e.sectors > 0) add(i + 1, e.type, e.lba, e.sectors);
    });
    const ext = primary.find((e) => isExtended(e.type));
    if (ext) {
      // A chain of extended boot records, each naming one logical partition and the next record.
      let ebr = ext.lba;
      for (let n = 5; ebr !== 0; n++) {
        if (n > 64) throw new ImageError('refused', `${what}: more than 60 logical partitions (a loop in the extended partition chain?)`);
        const b = await sector(ebr);
        if (b.readUInt16LE(510) !== 0xaa55) throw new ImageError('refused', `${what}: a broken extended boot record at sector ${ebr}`);
        const [logical, next] = entries(b);
        if (logical!.type !== 0 && logical!.sectors > 0) add(n, logical!.type, ebr + logical!.lba, logical!.sectors);
        ebr = next!.type !== 0 && next!.lba !== 0 ? ext.lba + next!.lba : 0;
      }
    }
    return { diskId: mbr.readUInt32LE(440).toString(16).padStart(8, '0'), partitions };
  } finally {
    await fh.close();
  }
}
