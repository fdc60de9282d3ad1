import type { Phase, UpdateError } from './device-state.js';

/**
 * The update workflow as one table: (phase, event) → next phase. Each phase's work is one function
 * in phases.ts that returns the event it ended with; the runner (update-runner.ts) persists the new
 * phase before anything else happens, so a restart resumes from the table, not from memory.
 *
 *   waiting ─start→ downloading ─downloaded→ downloadComplete ─windowOpen→ verifying ─verified→
 *   rebooting ─bootedTrial→ trial ─healthy→ committing ─committed→ applyComplete
 *
 * and the ways out: a failure before the slot is verified is `downloadFailed`; from then on,
 * `applyFailed`. An unhealthy trial goes through `rollingBack` (report, then a plain reboot into the
 * committed slot). Cancelling is possible until applying starts.
 */
export type WorkflowEvent =
  | 'start'
  | 'downloaded'
  | 'windowOpen'
  | 'verified'
  | 'bootedTrial'
  | 'fellBack'
  | 'healthy'
  | 'unhealthy'
  | 'committed'
  | 'cancel'
  | 'fail';

export const TRANSITIONS: Readonly<Record<Phase, Partial<Record<WorkflowEvent, Phase>>>> = {
  waiting: { start: 'downloading', cancel: 'downloadFailed', fail: 'downloadFailed' },
  downloading: { downloaded: 'downloadComplete', cancel: 'downloadFailed', fail: 'downloadFailed' },
  downloadComplete: { windowOpen: 'verifying', cancel: 'downloadFailed', fail: 'downloadFailed' },
  verifying: { verified: 'rebooting', fail: 'applyFailed' },
  rebooting: { bootedTrial: 'trial', fellBack: 'applyFailed', fail: 'applyFailed' },
  trial: { healthy: 'committing', unhealthy: 'rollingBack', fellBack: 'applyFailed', fail: 'rollingBack' },
  committing: { committed: 'applyComplete', fellBack: 'applyFailed', fail: 'rollingBack' },
  rollingBack: { fellBack: 'applyFailed', fail: 'applyFailed' },
  applyComplete: {},
  applyFailed: {},
  downloadFailed: {},
};

/** Phases that firmwareUpdateCancel may stop: nothing has touched the boot configuration yet. */
export const CANCELLABLE: readonly Phase[] = ['waiting', 'downloading', 'downloadComplete'];

/** How many times a phase may be entered for one update before the loop guard stops it. */
export const MAX_ENTRIES = 4;

/** What a phase function ends with. */
export interface PhaseOutcome {
  event: WorkflowEvent;
  error?: UpdateError;
}

/** The next phase, or an Error naming the impossible pair (a bug, never user input). */
export function nextPhase(phase: Phase, event: WorkflowEvent): Phase {
  const next = TRANSITIONS[phase][event];
  if (!next) throw new Error(`workflow: no transition from '${phase}' on '${event}'`);
  return next;
}
