import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BootError } from './backend.js';

/**
 * Reads one of the bootloader's values under /sys/firmware/devicetree/base/chosen/bootloader (/proc/device-tree/… on a Pi; or the configured
 * directory): a 4-byte big-endian unsigned integer, as the Pi firmware publishes `tryboot` and `partition`.
 */
export async function readBootloaderValue(deviceTreeDir: string, name: 'tryboot' | 'partition'): Promise<number> {
  const path = join(deviceTreeDir, name);
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw new BootError('badDeviceTree', `${path}: cannot read the bootloader's ${name} (${(err as Error).message})`);
  }
  if (bytes.length !== 4) throw new BootError('badDeviceTree', `${path}: holds ${bytes.length} bytes, expected a 4-byte big-endian number`);
  return bytes.readUInt32BE(0);
}

/** The bytes the firmware would publish for `value` (the simulator writes these). */
export function encodeBootloaderValue(value: number): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(value, 0);
  return bytes;
}
