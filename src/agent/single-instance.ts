import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import lockfile from 'proper-lockfile';

export class AlreadyRunningError extends Error {
  override name = 'AlreadyRunningError';
}

// proper-lockfile decides staleness from mtimes, which a Pi whose clock jumps at NTP sync gets wrong.
// The lock lives in a runtime directory that every boot (and systemd at every service start) clears,
// so it never needs to go stale: make that window longer than any uptime between clock jumps.
// (Node's timers hold at most 2^31-1 ms, and proper-lockfile refreshes at stale/2.)
const NEVER_STALE_MS = 2 ** 31 - 1;

/**
 * Takes the one-daemon-per-device lock in `runtimeDir`. Resolves to a release function; throws
 * AlreadyRunningError when another daemon holds it.
 */
export async function holdDaemonLock(runtimeDir: string, onLost: (err: Error) => void): Promise<() => Promise<void>> {
  await mkdir(runtimeDir, { recursive: true, mode: 0o755 });
  const target = join(runtimeDir, 'daemon');
  try {
    return await lockfile.lock(target, {
      realpath: false,
      stale: NEVER_STALE_MS,
      update: Math.floor(NEVER_STALE_MS / 2),
      retries: 0,
      onCompromised: onLost,
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOCKED') {
      throw new AlreadyRunningError(`another piota daemon is running (lock ${target}.lock); stop it first`);
    }
    throw err;
  }
}
