import type { Logger } from 'pino';
import type { DaemonConfig } from './config.js';
import type { UpdateRecord } from './device-state.js';

/** When an update may be applied: the maintenance-window policy. */
export interface ApplyWindowGate {
  /** Resolves when `update` may be applied now. */
  waitUntilOpen(update: UpdateRecord, signal: AbortSignal): Promise<void>;
  /** ISO time the window next opens, while `update` waits for it; null when it does not wait. */
  applyAt(update: UpdateRecord): string | null;
  stop(): void;
}

/**
 * Without a maintenance window in the config, an update applies as soon as it is downloaded.
 * (Windows are issue 6: node-cron schedules, computed from the persisted state.)
 */
export function applyWindowGate(_config: DaemonConfig, _logger: Logger): ApplyWindowGate {
  return {
    waitUntilOpen: async () => undefined,
    applyAt: () => null,
    stop: () => undefined,
  };
}
