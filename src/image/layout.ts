import { ImageError } from './image-error.js';
import { SECTOR } from './mbr.js';

const MiB = 1024 * 1024;

/** Partition sizes in bytes. */
export interface LayoutSizes {
  bootconfig: number;
  boot: number;
  root: number;
  data: number;
}

/**
 * Defaults that fit an 8 GB card (7.4 GiB usable on the smallest): 64 MiB + 2 x 512 MiB (Raspberry
 * Pi OS's boot partition is 512 MiB) + 2 x 2.75 GiB + 512 MiB for data, 7.1 GiB in all.
 */
export const DEFAULT_SIZES: LayoutSizes = { bootconfig: 64 * MiB, boot: 512 * MiB, root: 2816 * MiB, data: 512 * MiB };

/** Where everything starts, as on Raspberry Pi OS images (sector 8192, 4 MiB). */
const FIRST_START = 4 * MiB;
/** Room before each logical partition for its extended boot record, kept 1 MiB aligned. */
const EBR_GAP = MiB;

export type Role = 'bootconfig' | 'bootA' | 'bootB' | 'extended' | 'rootA' | 'rootB' | 'data';

/** The A/B tryboot layout of docs/raspberry-pi.md, numbered as the kernel numbers it. */
export const PARTITION_OF: Record<Exclude<Role, 'extended'>, number> = { bootconfig: 1, bootA: 2, bootB: 3, rootA: 5, rootB: 6, data: 7 };
export const SLOTS = {
  A: { boot: PARTITION_OF.bootA, root: PARTITION_OF.rootA },
  B: { boot: PARTITION_OF.bootB, root: PARTITION_OF.rootB },
} as const;
export type SlotName = keyof typeof SLOTS;

export interface PlannedPartition {
  number: number;
  role: Role;
  type: number;
  start: number;
  size: number;
}

export interface Layout {
  partitions: PlannedPartition[];
  /** The image's length in bytes. */
  total: number;
}

export function partitionOf(layout: Layout, role: Role): PlannedPartition {
  return layout.partitions.find((p) => p.role === role)!;
}

/** Sizes are whole MiB, so every partition stays 1 MiB aligned (what SD cards like). */
export function planLayout(sizes: LayoutSizes): Layout {
  for (const [name, bytes] of Object.entries(sizes)) {
    if (!Number.isSafeInteger(bytes) || bytes <= 0 || bytes % MiB !== 0) {
      throw new ImageError('refused', `--${name}-size must be a whole number of MiB, got ${bytes} bytes`);
    }
  }
  const partitions: PlannedPartition[] = [];
  let at = FIRST_START;
  const put = (role: Role, number: number, type: number, size: number) => {
    partitions.push({ number, role, type, start: at, size });
    at += size;
  };
  put('bootconfig', 1, 0x0c, sizes.bootconfig);
  put('bootA', 2, 0x0c, sizes.boot);
  put('bootB', 3, 0x0c, sizes.boot);
  const extendedStart = at;
  for (const [role, number, size] of [['rootA', 5, sizes.root], ['rootB', 6, sizes.root], ['data', 7, sizes.data]] as const) {
    at += EBR_GAP;
    put(role, number, 0x83, size);
  }
  partitions.splice(3, 0, { number: 4, role: 'extended', type: 0x05, start: extendedStart, size: at - extendedStart });
  return { partitions, total: at };
}

/** The sfdisk script that writes `layout` with disk identifier `diskId` (8 hex digits). */
export function sfdiskScript(layout: Layout, diskId: string): string {
  const lines = ['label: dos', `label-id: 0x${diskId}`, 'unit: sectors', ''];
  for (const p of layout.partitions) {
    lines.push(`start=${p.start / SECTOR}, size=${p.size / SECTOR}, type=${p.type.toString(16)}`);
  }
  return lines.join('\n') + '\n';
}
