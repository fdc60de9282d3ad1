import { ImageError } from '../image/image-error.js';
import { CommandError, UsageError } from './command.js';

/** Exit codes of `piota image convert` and `bundle`: 1 refused or failed, 2 usage, 3 the host lacks root or a tool. */
export const EXIT_HOST = 3;

/** Runs an image command's work, turning an ImageError into a one-line CommandError. */
export async function asImageCommand<T>(command: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof ImageError) throw new CommandError(`piota ${command}: ${err.message}`, err.code === 'host' ? EXIT_HOST : 1);
    throw err;
  }
}

/** "512M", "2816MiB", "3G" -> bytes (whole MiB). */
export function parseSizeFlag(command: string, name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const m = /^(\d+)\s*(M|MiB|G|GiB)$/i.exec(raw.trim());
  if (!m || Number(m[1]) === 0) throw new UsageError(`piota ${command}: --${name} must be a size in whole MiB or GiB, e.g. 512M or 3G, got '${raw}'`);
  return Number(m[1]) * 1024 * 1024 * (m[2]!.toUpperCase().startsWith('G') ? 1024 : 1);
}
