import type { PhaseContext } from './context.js';
import * as work from './phase-work.js';

/**
 * The update workflow, top to bottom: one row per phase. A row says everything about its phase —
 * the status the twin shows, the timestamps it stamps, its work, and where each event leads — and
 * every list the rest of the agent needs (the phase names, the terminal and cancellable phases, the
 * reported status) is derived from here. Adding a phase is one new row; the compiler refuses a row
 * without a status, without a way to fail, or leading to a phase that does not exist.
 *
 *   waiting ─start→ downloading ─downloaded→ downloadComplete ─windowOpen→ verifying ─verified→
 *   rebooting ─restarted→ checkingBoot ─bootedTrial→ trial ─healthy→ committing ─committed→ applyComplete
 *
 * The ways out: a failure before the slot is verified ends `downloadFailed`; from then on
 * `applyFailed`, through `rollingBack` once the new slot runs. `cancel` exists only in the phases
 * before anything touched the boot configuration. `loop` is raised by the runner, never by work:
 * a phase entered more than MAX_ENTRIES times for one update (a reboot loop) ends it.
 *
 * Phase names are persisted in the state file: renaming or removing one is a state-format change
 * (docs/update-workflow.md, "State compatibility").
 */
export const WORKFLOW = defineWorkflow({
  waiting: {
    status: 'waiting',
    work: work.waiting,
    on: { start: 'downloading', cancel: 'downloadFailed', fail: 'downloadFailed', loop: 'downloadFailed' },
  },
  downloading: {
    status: 'downloading',
    stamps: ['startedDownloadingTime'],
    work: work.downloading,
    on: { downloaded: 'downloadComplete', cancel: 'downloadFailed', fail: 'downloadFailed', loop: 'downloadFailed' },
  },
  downloadComplete: {
    status: 'downloadComplete',
    stamps: ['downloadCompleteTime'],
    work: work.downloadComplete,
    on: { windowOpen: 'verifying', cancel: 'downloadFailed', fail: 'downloadFailed', loop: 'downloadFailed' },
  },
  verifying: {
    status: 'applying',
    stamps: ['startedApplyingImage'],
    work: work.verifying,
    on: { verified: 'rebooting', fail: 'applyFailed', loop: 'applyFailed' },
  },
  rebooting: {
    status: 'applying',
    work: work.rebooting,
    on: { restarted: 'checkingBoot', fail: 'applyFailed', loop: 'applyFailed' },
  },
  checkingBoot: {
    status: 'applying',
    work: work.checkingBoot,
    on: { bootedTrial: 'trial', fellBack: 'applyFailed', fail: 'applyFailed', loop: 'applyFailed' },
  },
  trial: {
    status: 'applying',
    work: work.trial,
    on: { healthy: 'committing', unhealthy: 'rollingBack', fellBack: 'applyFailed', fail: 'rollingBack', loop: 'rollingBack' },
  },
  committing: {
    status: 'applying',
    work: work.committing,
    on: { committed: 'applyComplete', fellBack: 'applyFailed', fail: 'rollingBack', loop: 'rollingBack' },
  },
  rollingBack: {
    status: 'applyFailed',
    work: work.rollingBack,
    on: { fellBack: 'applyFailed', fail: 'applyFailed', loop: 'applyFailed' },
  },
  applyComplete: { status: 'applyComplete', stamps: ['lastFirmwareUpdate'], terminal: true },
  applyFailed: { status: 'applyFailed', terminal: true },
  downloadFailed: { status: 'downloadFailed', terminal: true },
});

/** The statuses of Microsoft's firmware-update schema, as `iothubDM.firmwareUpdate.status` shows them. */
export type ReportedStatus = 'waiting' | 'downloading' | 'downloadComplete' | 'downloadFailed' | 'applying' | 'applyComplete' | 'applyFailed';

export type WorkflowEvent =
  | 'start' | 'downloaded' | 'windowOpen' | 'verified' | 'restarted' | 'bootedTrial' | 'fellBack'
  | 'healthy' | 'unhealthy' | 'committed' | 'cancel' | 'fail' | 'loop';

/** The update record's timestamps, each stamped once, by the phase whose row names it. */
export type UpdateTimestamp = 'startedDownloadingTime' | 'downloadCompleteTime' | 'startedApplyingImage' | 'lastFirmwareUpdate';

export type Phase = keyof typeof WORKFLOW;

/** What a phase's work ends with (an error makes the update's `error`). */
export interface PhaseOutcome {
  event: WorkflowEvent;
  error?: import('./update-errors.js').UpdateError;
}

export type PhaseWork = (ctx: PhaseContext) => Promise<PhaseOutcome>;

interface WorkingPhase<P extends string> {
  status: ReportedStatus;
  stamps?: readonly UpdateTimestamp[];
  work: PhaseWork;
  /** `fail` and `loop` are required: every phase with work can fail and can loop. */
  on: Partial<Record<WorkflowEvent, P>> & { fail: P; loop: P };
  terminal?: never;
}

interface TerminalPhase {
  status: ReportedStatus;
  stamps?: readonly UpdateTimestamp[];
  terminal: true;
  work?: never;
  on?: never;
}

type PhaseSpec<P extends string> = WorkingPhase<P> | TerminalPhase;

function defineWorkflow<const T extends Record<string, PhaseSpec<Extract<keyof T, string>>>>(spec: T): T {
  return spec;
}

/** How many times a phase may be entered for one update before the loop guard raises `loop`. */
export const MAX_ENTRIES = 4;

const spec = (phase: Phase): PhaseSpec<Phase> => WORKFLOW[phase];

export const PHASES = Object.keys(WORKFLOW) as Phase[];

export function isPhase(value: unknown): value is Phase {
  return typeof value === 'string' && Object.hasOwn(WORKFLOW, value);
}

export function reportedStatus(phase: Phase): ReportedStatus {
  return spec(phase).status;
}

export function isTerminal(phase: Phase): boolean {
  return spec(phase).terminal === true;
}

/** Phases that firmwareUpdateCancel may stop: those with a `cancel` row. */
export function isCancellable(phase: Phase): boolean {
  return spec(phase).on?.cancel !== undefined;
}

export function stampsOf(phase: Phase): readonly UpdateTimestamp[] {
  return spec(phase).stamps ?? [];
}

export function workOf(phase: Phase): PhaseWork | undefined {
  return spec(phase).work;
}

/** The next phase, or an Error naming the impossible pair (a bug in a phase's work, never user input). */
export function nextPhase(phase: Phase, event: WorkflowEvent): Phase {
  const next = spec(phase).on?.[event];
  if (!next) throw new Error(`workflow: no transition from '${phase}' on '${event}'`);
  return next;
}
