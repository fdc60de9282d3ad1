import { readFile } from 'node:fs/promises';
import { BundleError } from '../bundle/errors.js';
import { CommandError } from './command.js';

// What the `piota bundle ...` commands share: reading key files and turning bundle errors into lines.

/** A key file's text; an unreadable file is a badKey error naming it. */
export async function readKeyFile(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new BundleError('badKey', `cannot read ${what} ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

/**
 * Runs `work`, reporting a BundleError or a file error as one `piota: ...` line with exit 1;
 * `file` (the bundle the command works on) prefixes bundle errors so the line names it.
 */
export async function asCommandError<T>(work: () => Promise<T>, file?: string): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof BundleError) throw new CommandError(file && err.code !== 'badKey' && !err.message.includes(file) ? `${file}: ${err.message}` : err.message);
    const e = err as NodeJS.ErrnoException;
    if (e.code && e.syscall) throw new CommandError(`cannot ${e.syscall} ${e.path ?? file ?? ''} (${e.code})`);
    throw err;
  }
}

/** 1073741824 -> "1 GiB (1073741824 bytes)". */
export function describeBytes(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  if (u === 0) return `${n} bytes`;
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[u]} (${n} bytes)`;
}
