import { spawn } from 'node:child_process';

/**
 * systemd's notification protocol without a native addon (Node has no unix datagram sockets, and
 * a Pi has no compiler): each message is one run of `systemd-notify`, from the systemd package.
 *
 * Why this is reliable: run as root, systemd-notify sends the message with the
 * credentials of its parent (this process, the service's main PID; see notify.c, checked with
 * systemd 252 here and in its man page) and then waits (BARRIER=1)
 * until systemd has processed it; so the message is neither rejected as coming from a stranger nor
 * lost because the short-lived sender was already gone. The unit still says `NotifyAccess=all`,
 * so that a non-root run or an older systemd-notify, whose messages come from the child, works too.
 *
 * Outside systemd (NOTIFY_SOCKET unset) every function does nothing.
 */

/** Tells systemd that start-up is complete (Type=notify): READY=1. */
export function notifyReady(): Promise<void> {
  return notify('READY=1');
}

/** Tells systemd the daemon is alive (WatchdogSec=): WATCHDOG=1. */
export function notifyWatchdog(): Promise<void> {
  return notify('WATCHDOG=1');
}

/** Tells systemd the daemon is shutting down on purpose: STOPPING=1. */
export function notifyStopping(): Promise<void> {
  return notify('STOPPING=1');
}

/** A free-form status line shown by `systemctl status piota`: STATUS=... */
export function notifyStatus(text: string): Promise<void> {
  return notify(`STATUS=${text.replace(/\n/g, ' ')}`);
}

export interface WatchdogOptions {
  /** Called when a ping fails (systemd-notify missing or refused); default: ignored. */
  onError?: (err: Error) => void;
  env?: NodeJS.ProcessEnv;
}

/**
 * Pings the watchdog every WATCHDOG_USEC/2 when systemd asked for pings (WatchdogSec= set, and
 * WATCHDOG_PID, when present, is this process). Returns a function that stops the pings. The
 * timer does not keep the process alive; a ping still running when the next one is due is not
 * doubled.
 */
export function startWatchdogPings(options: WatchdogOptions = {}): () => void {
  const intervalMs = watchdogIntervalMs(options.env ?? process.env);
  if (intervalMs === undefined) return () => undefined;
  let inFlight = false;
  const timer = setInterval(() => {
    if (inFlight) return;
    inFlight = true;
    notify('WATCHDOG=1', options.env)
      .catch((err: Error) => options.onError?.(err))
      .finally(() => {
        inFlight = false;
      });
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

/** Half the watchdog timeout systemd set for this process, in ms; undefined when there is none. */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv = process.env): number | undefined {
  if (!env.NOTIFY_SOCKET || !env.WATCHDOG_USEC) return undefined;
  if (env.WATCHDOG_PID && Number(env.WATCHDOG_PID) !== process.pid) return undefined;
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isSafeInteger(usec) || usec <= 0) return undefined;
  return Math.max(1, Math.floor(usec / 2000));
}

export class SystemdNotifyError extends Error {
  override name = 'SystemdNotifyError';
}

/** Sends one `VAR=value` message through systemd-notify; resolves once systemd has it. */
export function notify(message: string, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  if (!env.NOTIFY_SOCKET) return Promise.resolve();
  return new Promise((resolve, reject) => {
    // Spawned directly (no shell), so its parent, the PID it speaks for, is this process.
    const child = spawn('systemd-notify', [message], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      if (stderr.length < 2000) stderr += chunk;
    });
    child.on('error', (err: NodeJS.ErrnoException) => {
      reject(new SystemdNotifyError(err.code === 'ENOENT'
        ? `systemd-notify not found (install the systemd package) while sending ${message}`
        : `could not run systemd-notify for ${message}: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new SystemdNotifyError(`systemd-notify ${message} failed (${signal ?? `exit ${code}`}): ${stderr.trim() || 'no message'}`));
    });
  });
}
