import type { Slot } from '../boot/backend.js';
import type { ClockDecision } from './clock-floor.js';
import { reportedStatus, targetVersion, updateProgress, type DeviceState } from './device-state.js';
import { redactUri } from './redact-uri.js';
import { maskSecretsInText } from '../os/logger.js';

/** What the daemon knows besides the state file when it reports. */
export interface InventoryFacts {
  agentVersion: string;
  model: string;
  bootedSlot: Slot;
  committedSlot: Slot;
  runningVersion: string;
  /** When the maintenance window next opens, if the update waits for it. */
  applyAt: string | null;
  /** The anti-rollback floor in force. */
  securityFloor: number;
  /** What was decided about the wall clock before connecting (null before the decision). */
  clock: ClockDecision | null;
}

/**
 * The whole reported picture (docs/update-workflow.md, "Reported properties"; compatible with
 * Microsoft's firmware-update samples). It is sent as a PATCH: every field is present, with null where a previous update's
 * value must be cleared.
 */
export function reportedProperties(state: DeviceState, facts: InventoryFacts): Record<string, unknown> {
  return {
    iothubDM: {
      firmwareUpdate: firmwareUpdateSection(state, facts),
      firmwareVersion: facts.runningVersion,
    },
    piota: {
      agentVersion: facts.agentVersion,
      model: facts.model,
      bootedSlot: facts.bootedSlot,
      committedSlot: facts.committedSlot,
      slots: {
        A: slotSection(state, 'A'),
        B: slotSection(state, 'B'),
      },
      securityFloor: facts.securityFloor,
      clock: facts.clock,
      stateRecovery: state.recovery ?? null,
    },
  };
}

function slotSection(state: DeviceState, slot: Slot) {
  const r = state.slots[slot];
  return r ? { version: r.version, sha256: r.sha256, installedAt: r.installedAt } : { version: null, sha256: null, installedAt: null };
}

function firmwareUpdateSection(state: DeviceState, facts: InventoryFacts) {
  const u = state.update;
  if (!u) {
    return {
      status: null, fwPackageUri: null, error: null, startedWaitingTime: null, startedDownloadingTime: null,
      downloadCompleteTime: null, startedApplyingImage: null, lastFirmwareUpdate: null, updateId: null,
      progress: null, targetVersion: null, waitingFor: null, applyAt: null,
    };
  }
  const waitingForWindow = u.phase === 'downloadComplete' && facts.applyAt !== null;
  return {
    status: reportedStatus(u.phase),
    fwPackageUri: redactUri(u.fwPackageUri),
    // Messages may quote a server's answer or a URI: the log's own masking keeps keys and signatures out.
    error: u.error ? { code: u.error.code, message: maskSecretsInText(u.error.message) } : null,
    startedWaitingTime: u.times.startedWaitingTime,
    startedDownloadingTime: u.times.startedDownloadingTime,
    downloadCompleteTime: u.times.downloadCompleteTime,
    startedApplyingImage: u.times.startedApplyingImage,
    lastFirmwareUpdate: u.times.lastFirmwareUpdate,
    updateId: u.updateId,
    progress: updateProgress(u),
    targetVersion: targetVersion(u),
    waitingFor: waitingForWindow ? 'applyWindow' : null,
    applyAt: waitingForWindow ? facts.applyAt : null,
  };
}
