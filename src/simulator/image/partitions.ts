import { runHost } from './host-command.js';

/** One partition of a disk image, in bytes. */
export interface ImagePartition {
  number: number;
  offset: number;
  size: number;
  /** The MBR type, e.g. 'c' (FAT32 LBA), '83' (Linux), '5' (extended). */
  type: string;
}

/**
 * The A/B tryboot layout of docs/raspberry-pi.md: 1 bootconfig (FAT), 2 and 3 the slots' boot
 * partitions (FAT), 5 and 6 their root file systems (ext4), 7 data (ext4). The firmware maps a
 * boot partition to its root as each slot's cmdline.txt does (root=PARTUUID=<disk>-05/-06).
 */
export const PI_LAYOUT = {
  bootconfig: 1,
  boot: { A: 2, B: 3 },
  root: { A: 5, B: 6 },
  data: 7,
} as const;

interface SfdiskJson {
  partitiontable?: { label?: string; id?: string; sectorsize?: number; partitions?: { node: string; start: number; size: number; type: string }[] };
}

export interface PartitionTable {
  /** The MBR disk identifier, 8 hex digits: partition N's PARTUUID is `<diskId>-0N`. */
  diskId: string | undefined;
  partitions: ImagePartition[];
}

/** The partitions of `image` as sfdisk reads its table (the kernel here does not parse tables itself). */
export async function readPartitions(image: string): Promise<PartitionTable> {
  let table: SfdiskJson;
  try {
    table = JSON.parse(await runHost('sfdisk', ['--json', image])) as SfdiskJson;
  } catch (err) {
    throw new Error(`${image}: no partition table sfdisk can read (${(err as Error).message})`);
  }
  const t = table.partitiontable;
  if (!t?.partitions) throw new Error(`${image}: no partition table`);
  const sector = t.sectorsize ?? 512;
  const diskId = t.label === 'dos' && t.id ? t.id.replace(/^0x/i, '').toLowerCase().padStart(8, '0') : undefined;
  const partitions = t.partitions.map((p) => {
    const m = /(\d+)$/.exec(p.node);
    if (!m) throw new Error(`${image}: cannot tell the number of partition ${p.node}`);
    return { number: Number(m[1]), offset: p.start * sector, size: p.size * sector, type: p.type.toLowerCase() };
  });
  return { diskId, partitions };
}

/** The PARTUUID of MBR partition `n` (what cmdline.txt and fstab name), as udev links it. */
export function partUuid(diskId: string, n: number): string {
  return `${diskId}-${String(n).padStart(2, '0')}`;
}

/** Refuses an image without the A/B tryboot layout, naming what is missing. */
export function checkPiLayout(image: string, partitions: readonly ImagePartition[]): void {
  const wanted = [PI_LAYOUT.bootconfig, PI_LAYOUT.boot.A, PI_LAYOUT.boot.B, PI_LAYOUT.root.A, PI_LAYOUT.root.B, PI_LAYOUT.data];
  const missing = wanted.filter((n) => !partitions.some((p) => p.number === n));
  if (missing.length > 0) {
    throw new Error(
      `${image}: not an A/B tryboot image (partition${missing.length > 1 ? 's' : ''} ${missing.join(', ')} missing; ` +
        'expected 1 bootconfig, 2/3 boot A/B, 5/6 root A/B, 7 data: piota image convert makes one)',
    );
  }
}
