import { RolloutError } from './errors.js';

/**
 * What a rollout is asked to do, as given to `piota rollout start`; frozen in the record when the
 * rollout is created (a resumed rollout never re-reads the command line).
 */
export interface RolloutDefinition {
  name: string;
  release: { fwPackageUri: string; version: string; sha256?: string; applyNow: boolean };
  /** The IoT Hub query condition the devices must match (the part after WHERE). */
  target: string;
  /** Cumulative wave sizes as given: shares (`{percent}`) or counts (`{count}`, `all`). */
  waves: WaveSpec[];
  halt: HaltRule;
  waveTimeoutMs: number;
  /** How long each wave's job waits for a disconnected device to connect (IoT Hub's connectTimeoutInSeconds, 0..300). */
  connectTimeoutS: number;
  via: 'job' | 'configuration';
}

export type WaveSpec = { percent: number } | { count: number } | { all: true };

export interface HaltRule {
  /** The failure rate (0..1) at which the rollout halts... */
  failureRate: number;
  /** ...once at least this many devices failed. */
  minFailed: number;
}

const NAME = /^[a-z0-9][a-z0-9-]{0,47}$/;

/** A rollout name: lower-case letters, digits and dashes, at most 48 (it becomes part of job and device ids). */
export function checkRolloutName(name: string): string {
  if (!NAME.test(name)) {
    throw new RolloutError('badOption', `rollout name '${name}' must be 1-48 lower-case letters, digits or dashes, starting with a letter or digit`);
  }
  return name;
}

/**
 * `1%,10%,50%,100%` or `5,50,all`: cumulative, each wave at least as large as the one before, and
 * the last one reaching every device (`100%` or `all`) unless the operator means a partial rollout
 * (then the last wave simply ends it).
 */
export function parseWaves(raw: string): WaveSpec[] {
  const parts = raw.split(',').map((p) => p.trim());
  if (parts.length === 0 || parts.some((p) => p === '')) throw new RolloutError('badOption', `--waves '${raw}': give a comma-separated list such as 1%,10%,50%,100% or 5,50,all`);
  if (parts.length > 20) throw new RolloutError('badOption', `--waves '${raw}': at most 20 waves`);
  const waves = parts.map((p): WaveSpec => {
    if (p === 'all') return { all: true };
    const pct = /^(\d+(?:\.\d+)?)%$/.exec(p);
    if (pct) {
      const percent = Number(pct[1]);
      if (percent <= 0 || percent > 100) throw new RolloutError('badOption', `--waves: '${p}' is not a share from 0% (exclusive) to 100%`);
      return { percent };
    }
    if (/^\d+$/.test(p) && Number(p) > 0) return { count: Number(p) };
    throw new RolloutError('badOption', `--waves: '${p}' is neither a share (10%), a device count (50) nor 'all'`);
  });
  const kinds = new Set(waves.map((w) => ('percent' in w ? 'percent' : 'count' in w ? 'count' : 'all')));
  if (kinds.has('percent') && kinds.has('count')) throw new RolloutError('badOption', `--waves '${raw}': mix shares and counts is ambiguous; use one kind (with 'all' for the rest)`);
  waves.forEach((w, i) => {
    if ('all' in w && i !== waves.length - 1) throw new RolloutError('badOption', `--waves '${raw}': 'all' can only be the last wave`);
    const prev = waves[i - 1];
    if (!prev) return;
    const a = 'percent' in prev ? prev.percent : 'count' in prev ? prev.count : Infinity;
    const b = 'percent' in w ? w.percent : 'count' in w ? w.count : Infinity;
    if (b <= a) throw new RolloutError('badOption', `--waves '${raw}': waves are cumulative, so each must be larger than the one before ('${parts[i]}' after '${parts[i - 1]}')`);
  });
  return waves;
}

/** `5%` or `0.05` as a rate in (0, 1]. */
export function parseRate(raw: string, option = '--halt-failure-rate'): number {
  const pct = /^(\d+(?:\.\d+)?)%$/.exec(raw.trim());
  const value = pct ? Number(pct[1]) / 100 : /^(0(\.\d+)?|1(\.0+)?)$/.test(raw.trim()) ? Number(raw) : NaN;
  if (!(value > 0 && value <= 1)) throw new RolloutError('badOption', `${option} '${raw}' must be a share above 0% and at most 100% (5% or 0.05)`);
  return value;
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `90s`, `10m`, `2h` (also `1h30m`) as milliseconds; a bare number is refused (seconds or minutes?). */
export function parseDuration(raw: string, option = '--wave-timeout', min = 1000, max = 30 * 86_400_000): number {
  const text = raw.trim();
  const re = /(\d+)(ms|s|m|h|d)/y;
  let total = 0;
  let pos = 0;
  while (pos < text.length) {
    re.lastIndex = pos;
    const m = re.exec(text);
    if (!m) { total = NaN; break; }
    total += Number(m[1]) * UNIT_MS[m[2]];
    pos = re.lastIndex;
  }
  if (text === '' || !Number.isFinite(total)) throw new RolloutError('badOption', `${option} '${raw}' is not a duration: use a number with a unit, such as 90s, 10m or 2h`);
  if (total < min || total > max) throw new RolloutError('badOption', `${option} '${raw}' must be from ${formatDuration(min)} to ${formatDuration(max)}`);
  return total;
}

/** The shortest of `90s`, `10m`, `2h` that says `ms` (whole units, largest first). */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  let left = Math.round(ms / 1000);
  const out: string[] = [];
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    if (left >= size) {
      out.push(`${Math.floor(left / size)}${unit}`);
      left %= size;
    }
  }
  return out.join('');
}

/** The text a wave list was given as, for status lines and the record. */
export function formatWaves(waves: WaveSpec[]): string {
  return waves.map((w) => ('percent' in w ? `${w.percent}%` : 'count' in w ? String(w.count) : 'all')).join(',');
}

/**
 * The target condition is passed to IoT Hub as is (the hub validates its own language); refused
 * here only when it could not be a condition at all, or tries to end the WHERE clause.
 */
export function checkTarget(raw: string): string {
  const t = raw.trim();
  if (t === '') throw new RolloutError('badOption', '--target must be an IoT Hub query condition, such as "tags.site = \'lab\'"');
  if (/^\s*select\b/i.test(t)) throw new RolloutError('badOption', `--target takes only the condition (what follows WHERE), not a whole query: '${t}'`);
  return t;
}
