import { execFile, type ExecFileException } from 'node:child_process';

/**
 * The signal that ended a command, when it came from outside this process (not `execFile`'s own
 * timeout): under systemd, the stop of this service, which signals every process of its cgroup.
 */
export function outsideSignal(err: ExecFileException | null): string | null {
  return err?.signal && !err.killed ? err.signal : null;
}

/**
 * Whether the system is shutting down (a reboot or power-off is under way), as systemd says it:
 * `systemctl is-system-running` prints `stopping` from the moment a shutdown job is queued until
 * this process is stopped. A `systemctl` killed by a signal that was not ours counts as yes too: the
 * stop of this service signals every process of its cgroup, the question's child among them.
 * Anything else (running, degraded, no systemd at all: `offline`, no systemctl) is false, and so is
 * an answer that does not come within `timeoutMs`.
 */
export function systemShuttingDown(timeoutMs = 10_000): Promise<boolean> {
  return new Promise((resolve) => {
    execFile('systemctl', ['is-system-running'], { timeout: timeoutMs }, (err, stdout) => {
      // Exits non-zero for every state but running; the state is on stdout either way.
      if (outsideSignal(err) !== null) return resolve(true);
      resolve(String(stdout ?? '').trim() === 'stopping');
    });
  });
}
