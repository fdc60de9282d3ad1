import { createTask, validateDetailed, type ScheduledTask } from 'node-cron';
import type { MaintenanceWindow } from './config.js';

/** A maintenance window that cannot be used; the message names the field. */
export class WindowScheduleError extends Error {
  override name = 'WindowScheduleError';
}

/** How far ahead an opening is looked for: four years and a day, so a 29 February window is found. */
const HORIZON_MS = (4 * 366 + 1) * 86_400_000;

/** The zone the system runs in (TZ, /etc/localtime), used when the window names none. */
export function systemTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone;
}

interface LocalParts {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

/**
 * When a maintenance window is open: from each occurrence of the cron expression (in the window's
 * time zone) for `durationMinutes`. node-cron 4 parses and matches the expression (its `match(date)`
 * is the only judge of whether an instant is an occurrence, so every syntax it accepts — ranges,
 * steps, names, L, W, # — means the same here); what it does not offer is a search from an arbitrary
 * instant (`getNextRuns` counts from the real clock, and nothing looks backwards), which a controllable
 * clock and "did a window open within the last durationMinutes" both need. So the search is done here:
 * it walks forward from an instant, skipping whole local hours and minutes that the parsed fields rule
 * out, and asks node-cron only at the candidate seconds; a candidate that fails there fails on its day
 * (day of month or week), so the rest of that day is skipped too. A year is a few thousand steps.
 */
export class MaintenanceSchedule {
  readonly cron: string;
  readonly durationMinutes: number;
  readonly timeZone: string;
  private readonly task: ScheduledTask;
  private readonly seconds: number[];
  private readonly minutes: number[];
  private readonly hours: Set<number>;
  private readonly months: Set<number>;
  private readonly format: Intl.DateTimeFormat;

  /** Throws WindowScheduleError naming `maintenanceWindow.cron` or `.timeZone`. */
  constructor(window: MaintenanceWindow) {
    this.cron = window.cron;
    this.durationMinutes = window.durationMinutes;
    this.timeZone = window.timeZone ?? systemTimeZone();
    try {
      this.format = new Intl.DateTimeFormat('en-US', {
        timeZone: this.timeZone, hourCycle: 'h23',
        year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric',
      });
    } catch {
      throw new WindowScheduleError(`maintenanceWindow.timeZone: '${this.timeZone}' is not a time zone this system knows (expected an IANA name such as Europe/Berlin or UTC)`);
    }
    let check;
    try {
      check = validateDetailed(window.cron);
    } catch (err) {
      throw new WindowScheduleError(`maintenanceWindow.cron: '${window.cron}' is not a cron expression (${(err as Error).message})`);
    }
    if (!check.valid || !check.fields) {
      const why = check.errors.map((e) => `${e.field}: ${e.message}`).join('; ');
      throw new WindowScheduleError(`maintenanceWindow.cron: '${window.cron}' is not a valid cron expression (${why || 'expected 5 or 6 fields'})`);
    }
    this.seconds = [...check.fields.second].sort((a, b) => a - b);
    this.minutes = [...check.fields.minute].sort((a, b) => a - b);
    this.hours = new Set(check.fields.hour);
    this.months = new Set(check.fields.month);
    // Created, never started: the task is only asked whether an instant matches.
    this.task = createTask(window.cron, () => undefined, { timezone: this.timeZone, name: 'piota-maintenance-window' });
  }

  /** Frees node-cron's registry entry for this expression. */
  dispose(): void {
    void this.task.destroy();
  }

  /** The window is open at `at` (ms): an occurrence lies in (at − duration, at]. */
  isOpen(at: number): boolean {
    return this.firstOccurrence(at - this.durationMinutes * 60_000, at) !== null;
  }

  /** The first occurrence strictly after `after` (ms), or null if none within four years. */
  nextOpening(after: number): number | null {
    return this.firstOccurrence(after, after + HORIZON_MS);
  }

  /** The first whole second in (from, to] that node-cron matches. */
  private firstOccurrence(from: number, to: number): number | null {
    let t = Math.floor(from / 1000) * 1000 + 1000;
    let rejectedDay = '';
    while (t <= to) {
      const p = this.localParts(t);
      const nextHour = t + ((59 - p.minute) * 60 + (60 - p.second)) * 1000;
      if (!this.months.has(p.month) || !this.hours.has(p.hour) || `${p.year}-${p.month}-${p.day}` === rejectedDay) {
        t = nextHour;
        continue;
      }
      const minute = this.minutes.find((m) => m >= p.minute);
      if (minute === undefined) {
        t = nextHour;
        continue;
      }
      if (minute > p.minute) {
        t += ((minute - p.minute) * 60 - p.second) * 1000;
        continue;
      }
      const second = this.seconds.find((s) => s >= p.second);
      if (second === undefined) {
        t += (60 - p.second) * 1000;
        continue;
      }
      if (second > p.second) {
        t += (second - p.second) * 1000;
        continue;
      }
      if (this.task.match(new Date(t))) return t;
      // Second, minute, hour and month matched: the day of month or week did not, for the whole day.
      rejectedDay = `${p.year}-${p.month}-${p.day}`;
      t = nextHour;
    }
    return null;
  }

  private localParts(t: number): LocalParts {
    const p = { year: 0, month: 0, day: 0, hour: 0, minute: 0, second: 0 };
    for (const part of this.format.formatToParts(t)) {
      if (part.type in p) p[part.type as keyof LocalParts] = Number(part.value);
    }
    return p;
  }
}
