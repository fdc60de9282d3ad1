import type { Logger } from 'pino';
import type { DaemonConfig } from './config.js';
import type { UpdateRecord } from './device-state.js';
import { MaintenanceSchedule } from './maintenance-window.js';
import { systemClock, type Clock } from './clock.js';

/** When an update may be applied: the maintenance-window policy. */
export interface ApplyWindowGate {
  /** Resolves when `update` may be applied now. */
  waitUntilOpen(update: UpdateRecord, signal: AbortSignal): Promise<void>;
  /** ISO time the window next opens, while `update` waits for it; null when it does not wait. */
  applyAt(update: UpdateRecord): string | null;
  stop(): void;
}

/** Time as the gate sees it (the agent's clock); tests pass a fake one so windows open without real waiting. */
export type WindowClock = Pick<Clock, 'now' | 'sleep'>;

/**
 * The longest single nap while waiting: the wait is recomputed at least this often, so a clock that
 * jumps (a Pi without RTC syncing NTP after boot) or a long wait never sleeps past the opening.
 */
const MAX_NAP_MS = 60_000;

/**
 * Without a maintenance window, or for an update sent with `"applyWindow": "now"`, an update applies
 * as soon as it is downloaded. With one, it waits in `downloadComplete` until the window is open.
 * Nothing of the wait is kept in memory only: it is recomputed from the persisted phase and the
 * config at every start, so it survives restarts and reboots of the old slot.
 */
export function applyWindowGate(config: DaemonConfig, logger: Logger, clock: WindowClock = systemClock()): ApplyWindowGate {
  const schedule = config.maintenanceWindow ? new MaintenanceSchedule(config.maintenanceWindow) : null;
  // The reported properties are built often (progress, reconnects): remember the last opening found
  // while the window was closed; it stays right until that instant.
  let memo: { updateId: string; opensAt: number } | null = null;
  return {
    async waitUntilOpen(update, signal) {
      if (!schedule || update.applyNow) return;
      let announced = false;
      for (;;) {
        const now = clock.now();
        if (schedule.isOpen(now)) {
          if (announced) logger.info({ updateId: update.updateId }, 'the maintenance window is open; applying');
          return;
        }
        const next = schedule.nextOpening(now);
        if (!announced) {
          logger.info({ updateId: update.updateId, applyAt: next === null ? null : new Date(next).toISOString(), cron: schedule.cron, timeZone: schedule.timeZone }, 'waiting for the maintenance window');
          announced = true;
        }
        await clock.sleep(next === null ? MAX_NAP_MS : Math.min(MAX_NAP_MS, next - now), signal);
      }
    },
    applyAt(update) {
      if (!schedule || !waitsForWindow(update)) return null;
      const now = clock.now();
      if (memo && memo.updateId === update.updateId && now < memo.opensAt) return new Date(memo.opensAt).toISOString();
      const opensAt = windowWaitUntil(schedule, now);
      memo = opensAt === null ? null : { updateId: update.updateId, opensAt };
      return opensAt === null ? null : new Date(opensAt).toISOString();
    },
    stop() {
      schedule?.dispose();
    },
  };
}

/** The rule: a downloaded update waits for the window, unless it was sent with `"applyWindow": "now"`. */
export function waitsForWindow(update: UpdateRecord): boolean {
  return update.phase === 'downloadComplete' && !update.applyNow;
}

/** When `update` applies, for a reader without a gate (`piota status`): ISO time, or null when it does not wait. */
export function applyTimeOf(schedule: MaintenanceSchedule | null, update: UpdateRecord | null, now: number): string | null {
  if (!schedule || !update || !waitsForWindow(update)) return null;
  const at = windowWaitUntil(schedule, now);
  return at === null ? null : new Date(at).toISOString();
}

/** When a wait that starts at `now` ends: the next opening, or null when the window is open now (or never opens). */
export function windowWaitUntil(schedule: MaintenanceSchedule, now: number): number | null {
  return schedule.isOpen(now) ? null : schedule.nextOpening(now);
}
