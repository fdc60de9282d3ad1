import { mkdir, readFile, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parseDeviceConnectionString } from '../agent/connection-string.js';
import { syncDirectory, writeFileDurably } from '../os/durable-file.js';

/**
 * First-boot provisioning: the connection string a user dropped on the FAT bootconfig partition
 * after flashing (from any laptop, as with Raspberry Pi Imager's custom settings) is moved to the
 * data partition, where the daemon reads it, and removed from the FAT partition, which every
 * laptop can read.
 */

/** The file a user drops at the root of the bootconfig partition (docs/raspberry-pi.md). */
export const DROPPED_CONNECTION_STRING = 'piota-connection-string.txt';

export type ProvisionOutcome = 'nothing' | 'written' | 'replaced' | 'unchanged';

export interface ProvisionResult {
  outcome: ProvisionOutcome;
  deviceId?: string;
  target: string;
}

/** A dropped file piota cannot use: the message names the file and the problem, never the key. */
export class ProvisionError extends Error {
  override name = 'ProvisionError';
}

/**
 * Moves `dropped` to `<stateDir>/connection-string` (0600, durably), then deletes `dropped` and
 * syncs its directory. Order matters for a power cut: the target is complete on disk before the
 * source goes, so a cut at any point leaves the string in one place at least, and the next boot
 * repeats the move. An invalid file is left where it is (the user sees it and fixes it) and
 * nothing is written.
 */
export async function provisionDroppedConnectionString(dropped: string, stateDir: string): Promise<ProvisionResult> {
  const target = join(stateDir, 'connection-string');
  let text: string;
  try {
    text = await readFile(dropped, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { outcome: 'nothing', target };
    throw new ProvisionError(`${dropped}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let parsed;
  try {
    // A laptop's editor may add a byte-order mark or CRLF: trim() removes both.
    parsed = parseDeviceConnectionString(text.replace(/^\uFEFF/, ''));
  } catch (err) {
    throw new ProvisionError(`${dropped}: ${(err as Error).message}; the file is left in place, nothing was written`);
  }
  const existing = await readFile(target, 'utf8').then((s) => s.trim(), () => undefined);
  const outcome: ProvisionOutcome = existing === undefined ? 'written' : existing === parsed.connectionString ? 'unchanged' : 'replaced';
  if (outcome !== 'unchanged') {
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    await writeFileDurably(target, parsed.connectionString + '\n', { mode: 0o600, mkdirs: true });
  }
  await unlink(dropped);
  await syncDirectory(dirname(dropped));
  return { outcome, deviceId: parsed.deviceId, target };
}
