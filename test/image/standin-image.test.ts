import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { STANDIN_DISK_ID, hostArch, standinImage, standinSkipReason } from '../helpers/standin-image.js';

const skip = standinSkipReason();

describe.skipIf(skip)(`the stand-in Raspberry Pi OS image${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('is a read-only MBR image with a FAT boot partition and a Linux root', { timeout: 600_000 }, async () => {
    const image = await standinImage(hostArch());
    expect(statSync(image).mode & 0o222).toBe(0);
    const table = JSON.parse(spawnSync('sfdisk', ['-J', image], { encoding: 'utf8' }).stdout).partitiontable;
    expect(table.label).toBe('dos');
    expect(table.id).toBe(STANDIN_DISK_ID);
    expect(table.partitions.map((p: { type: string }) => p.type)).toEqual(['c', '83']);
    // In disk order: the boot partition first, as on Raspberry Pi OS images.
    expect(table.partitions[0].start).toBeLessThan(table.partitions[1].start);
  });
});
