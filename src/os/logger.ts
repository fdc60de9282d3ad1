import { fstatSync } from 'node:fs';
import { pino, stdSerializers, symbols, type DestinationStream, type Logger } from 'pino';

export type { Logger } from 'pino';

export interface LoggerOptions {
  /** pino level name (trace, debug, info, warn, error, fatal, silent); default 'info'. */
  level?: string;
  /** The `name` field of every line; default 'piota'. */
  name?: string;
  /** Where the JSON lines go; default stdout (written synchronously, so nothing is lost at exit). */
  destination?: NodeJS.WritableStream;
  /**
   * Prefix each line with its syslog priority (`<3>{...}`). Default: only when stdout is the journal
   * (JOURNAL_STREAM names stdout's device and inode) and the destination is stdout.
   */
  journal?: boolean;
}

/**
 * The daemon's logger: one JSON object per line. Under systemd each line starts with `<N>`, which
 * journald (SyslogLevelPrefix=, on by default) turns into the entry's PRIORITY and strips, so
 * `journalctl -p warning` filters by pino level and `journalctl -o cat` shows the plain JSON.
 * Secrets never reach the log: keys that name one are replaced, and SAS signatures and shared
 * access keys inside any string (a blob URI, an error message) are masked.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const toStdout = options.destination === undefined || options.destination === process.stdout;
  const target: DestinationStream = toStdout
    ? pino.destination({ dest: 1, sync: true })
    : (options.destination as unknown as DestinationStream);
  const journal = options.journal ?? (toStdout && stdoutIsJournal());
  return pino(
    {
      name: options.name ?? 'piota',
      level: options.level ?? 'info',
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        log: (object) => redactSecrets(object) as Record<string, unknown>,
        bindings: (bindings) => redactSecrets(bindings) as Record<string, unknown>,
      },
      // formatters.log has already turned errors into plain objects; this catches any left.
      serializers: { err: (value: unknown) => (value instanceof Error ? redactSecrets(value) : value) },
      // The message text and child bindings never pass through formatters.log: mask the final line too.
      hooks: { streamWrite: (line: string) => maskSecretsInText(maskSecretFieldsInJson(line)) },
    },
    journal ? withSyslogPriority(target) : target,
  );
}

/** True when stdout is the stream systemd connected to the journal (see systemd.exec JOURNAL_STREAM). */
export function stdoutIsJournal(env: NodeJS.ProcessEnv = process.env): boolean {
  const expected = env.JOURNAL_STREAM;
  if (!expected) return false;
  try {
    const st = fstatSync(1);
    return expected === `${st.dev}:${st.ino}`;
  } catch {
    return false;
  }
}

/**
 * The syslog priority (sd-daemon.h SD_EMERG=0 .. SD_DEBUG=7) for a pino level number:
 * fatal → 2 crit, error → 3 err, warn → 4 warning, info → 6 info, debug/trace → 7 debug.
 */
export function syslogPriority(level: number): number {
  if (level >= 60) return 2;
  if (level >= 50) return 3;
  if (level >= 40) return 4;
  if (level >= 30) return 6;
  return 7;
}

/**
 * Wraps a destination so that each line starts with `<N>`. pino tells a stream that asks for
 * metadata the level of the line it is about to write (the mechanism pino.multistream uses).
 */
function withSyslogPriority(target: DestinationStream): DestinationStream {
  const wrapped = {
    [symbols.needsMetadataGsym]: true,
    lastLevel: 30,
    write(line: string) {
      target.write(`<${syslogPriority(wrapped.lastLevel)}>${line}`);
    },
    flush(cb?: (err?: Error) => void) {
      const flushable = target as { flush?: (cb: (err?: Error) => void) => void };
      if (typeof flushable.flush === 'function') flushable.flush(cb ?? (() => undefined));
      else cb?.();
    },
    flushSync() {
      (target as { flushSync?: () => void }).flushSync?.();
    },
  };
  return wrapped as unknown as DestinationStream;
}

const REDACTED = '[redacted]';

/** Lower-cased key names (and suffixes) that hold a secret wherever they appear. */
const SECRET_KEYS = new Set(['sas', 'sig', 'primarykey', 'secondarykey', 'symmetrickey', 'authorization', 'privatekey', 'passphrase']);
const SECRET_SUFFIXES = ['sharedaccesskey', 'sharedaccesssignature', 'connectionstring', 'signature', 'sastoken', 'token', 'password', 'secret'];

function isSecretKey(key: string): boolean {
  const k = key.toLowerCase().replace(/[^a-z]/g, '');
  return SECRET_KEYS.has(k) || SECRET_SUFFIXES.some((s) => k.endsWith(s));
}

/** Replaces string values of secret-named keys in a serialized JSON line (child bindings). */
function maskSecretFieldsInJson(line: string): string {
  return line.replace(/"([A-Za-z_$][\w$]*)":"((?:[^"\\]|\\.)*)"/g, (whole, key: string) =>
    isSecretKey(key) ? `"${key}":"${REDACTED}"` : whole);
}

/**
 * Masks secrets inside free text: `SharedAccessKey=...` in connection strings and the `sig=`
 * of SAS tokens and SAS URIs (the rest of the URI stays readable).
 */
export function maskSecretsInText(text: string): string {
  return text
    .replace(/(SharedAccessKey=)[^;"\\\s]*/gi, `$1${REDACTED}`)
    .replace(/([?&\s]sig=)[^&;"\\\s]*/gi, `$1${REDACTED}`);
}

/** A copy of `value` with secret-named keys replaced at any depth and secrets in strings masked. */
export function redactSecrets(value: unknown, seen: WeakSet<object> = new WeakSet()): unknown {
  if (typeof value === 'string') return maskSecretsInText(value);
  if (value === null || typeof value !== 'object') return value;
  if (seen.has(value)) return '[circular]';
  seen.add(value);
  if (value instanceof Error) return redactSecrets(stdSerializers.err(value), seen);
  if (Array.isArray(value)) return value.map((v) => redactSecrets(v, seen));
  if (Buffer.isBuffer(value) || ArrayBuffer.isView(value)) return `[${value.byteLength} bytes]`;
  if (value instanceof Date) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = isSecretKey(k) && v !== null && v !== undefined ? REDACTED : redactSecrets(v, seen);
  }
  return out;
}
