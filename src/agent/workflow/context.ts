import type { Logger } from 'pino';
import type { DeviceTrust } from '../../bundle/verifier.js';
import type { DownloadRequest, DownloadResponse } from '../../download/https-source.js';
import type { Clock } from '../clock.js';
import type { DaemonConfig } from '../config.js';
import type { DeviceState, UpdateRecord } from '../device-state.js';
import type { BootBackend, SlotStorage } from '../ports.js';
import type { SecurityFloor } from '../security-floor.js';

/** Opens an HTTPS download (src/download/https-source.ts in the daemon; a fake in unit tests). */
export type HttpSource = (request: DownloadRequest) => Promise<DownloadResponse>;

/** The outside world, as the workflow's work sees it: each part a small interface, faked in unit tests. */
export interface WorkflowPorts {
  boot: BootBackend;
  storage: SlotStorage;
  http: HttpSource;
  clock: Clock;
  logger: Logger;
  securityFloor: Pick<SecurityFloor, 'current' | 'raise'>;
  /** A progress-only change to report (coalesced). */
  progressChanged(): void;
  /** Waits (bounded) until the hub acknowledged the current reported picture; false if it did not. */
  flushReports(timeoutMs: number): Promise<boolean>;
  /** Resolves once this process has read the twin: the hub is reached. */
  hubReached: Promise<void>;
  /** Resolves when the update may be applied (the maintenance window is open, or none is set). */
  applyWindowOpen(update: UpdateRecord, signal: AbortSignal): Promise<void>;
  /** true while the system is shutting down: a reboot that was asked for is under way (src/os/system-shutdown.ts). */
  shutdownUnderWay(): Promise<boolean>;
}

/** What the daemon's config contributes to every phase, read once at start-up. */
export interface WorkflowSettings {
  config: DaemonConfig;
  /** The trusted keys' PEM text (the files named by config.trustedKeys). */
  trustedKeys: string[];
  /** PEM of the extra CA for downloads (config.downloadCaFile), if any. */
  downloadCa?: string;
}

/** Everything one run of a phase's work may use. */
export interface PhaseContext {
  settings: WorkflowSettings;
  ports: WorkflowPorts;
  state: DeviceState;
  update: UpdateRecord;
  /** The phase was read from disk at start-up rather than entered by this process. */
  resumed: boolean;
  /** Aborted on daemon stop and on cancel: long work ends promptly. */
  signal: AbortSignal;
  /** Persists the whole state now. */
  save(): Promise<void>;
}

/** What a device trusts when it reads a bundle, from the config and the anti-rollback floor. */
export function deviceTrust(ctx: PhaseContext): DeviceTrust {
  const { config, trustedKeys } = ctx.settings;
  return { trustedKeys, model: config.model, securityVersion: ctx.ports.securityFloor.current, maxChunkBytes: config.maxChunkBytes };
}
