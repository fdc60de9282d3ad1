import type { Logger } from 'pino';
import { isTerminal, reportedStatus, type DeviceState, type Phase, type UpdateError, type UpdateRecord } from './device-state.js';
import { PHASE_WORK, type PhaseContext } from './phases.js';
import { UpdateFailure } from './update-failure.js';
import { CANCELLABLE, MAX_ENTRIES, nextPhase, type PhaseOutcome } from './workflow.js';

export type PhaseContextBase = Omit<PhaseContext, 'update' | 'resumed' | 'signal' | 'state'>;

export interface RunnerDeps {
  state: DeviceState;
  save(): Promise<void>;
  statusChanged(): void;
  /** Re-reads what the phase's work may have changed (committed slot, running version), before the new phase shows. */
  refreshInventory(): Promise<void>;
  logger: Logger;
  context: PhaseContextBase;
}

class Cancelled extends Error {}
class Stopping extends Error {}

/**
 * Drives the current update through the workflow table, one phase at a time. Every transition is
 * persisted before the next phase starts, so the state file is the single source of truth.
 */
export class UpdateRunner {
  private running: Promise<void> | null = null;
  private abort: AbortController | null = null;
  private stopped = false;
  /** A new update arrived while the last one was winding down: drive again when done. */
  private startAgain = false;
  /** firmwareUpdateCancel asked; honoured by the next cancellable phase. */
  private cancelRequested = false;

  constructor(private readonly deps: RunnerDeps) {}

  /** Starts driving the current update if there is one that has not ended (no-op if already running). */
  start(resumed: boolean): void {
    if (this.stopped) return;
    if (this.running) {
      this.startAgain = true;
      return;
    }
    this.running = this.drive(resumed)
      .catch((err: unknown) => this.deps.logger.error({ err: (err as Error).message }, 'the update workflow stopped on an error'))
      .finally(() => {
        this.running = null;
        if (this.startAgain) {
          this.startAgain = false;
          this.start(false);
        }
      });
  }

  /** firmwareUpdateCancel: true when the update was cancelled, false when it is too late. */
  cancel(): boolean {
    const u = this.deps.state.update;
    if (!u || !CANCELLABLE.includes(u.phase)) return false;
    this.cancelRequested = true;
    this.abort?.abort(new Cancelled('cancelled'));
    if (!this.running) this.start(false);
    return true;
  }

  /** Stops the current phase's work without a transition (daemon shutdown); resumes at next start. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.abort?.abort(new Stopping('stopping'));
    await this.running;
  }

  private async drive(resumed: boolean): Promise<void> {
    let fromDisk = resumed;
    for (;;) {
      const update = this.deps.state.update;
      if (!update || isTerminal(update.phase) || this.stopped) return;
      if (fromDisk) {
        // A phase found at start-up counts as entered again: that is how reboot loops show.
        update.entries[update.phase] = (update.entries[update.phase] ?? 0) + 1;
        await this.deps.save();
      }
      const outcome = await this.runPhase(update, fromDisk);
      if (outcome === 'stopped') return;
      fromDisk = false;
      await this.transition(update, outcome);
    }
  }

  private async runPhase(update: UpdateRecord, resumed: boolean): Promise<PhaseOutcome | 'stopped'> {
    const phase = update.phase;
    if (this.cancelRequested && CANCELLABLE.includes(phase)) return cancelled();
    if ((update.entries[phase] ?? 0) > MAX_ENTRIES) {
      return { event: 'fail', error: { code: 'bootLoop', message: `the update entered '${phase}' ${update.entries[phase]} times; stopped to break the loop` } };
    }
    const work = PHASE_WORK[phase];
    if (!work) throw new Error(`workflow: phase '${phase}' has no work`);
    const abort = new AbortController();
    this.abort = abort;
    try {
      return await work({ ...this.deps.context, state: this.deps.state, update, resumed, signal: abort.signal });
    } catch (err) {
      if (abort.signal.reason instanceof Stopping) return 'stopped';
      if (abort.signal.reason instanceof Cancelled || (this.cancelRequested && CANCELLABLE.includes(phase))) return cancelled();
      return { event: 'fail', error: describeFailure(err) };
    } finally {
      this.abort = null;
    }
  }

  private async transition(update: UpdateRecord, outcome: PhaseOutcome): Promise<void> {
    const from = update.phase;
    const to = nextPhase(from, outcome.event);
    await this.deps.refreshInventory();
    update.phase = to;
    if (outcome.error) update.error = outcome.error;
    update.entries[to] = (update.entries[to] ?? 0) + 1;
    stampTimes(update, to);
    if (isTerminal(to)) this.cancelRequested = false;
    await this.deps.save();
    const level = to === 'applyFailed' || to === 'downloadFailed' ? 'warn' : 'info';
    this.deps.logger[level](
      { updateId: update.updateId, from, to, event: outcome.event, status: reportedStatus(to), error: update.error ?? undefined },
      `update ${to}`,
    );
    this.deps.statusChanged();
  }
}

function cancelled(): PhaseOutcome {
  return { event: 'cancel', error: { code: 'cancelled', message: 'cancelled by firmwareUpdateCancel before applying started' } };
}

function stampTimes(update: UpdateRecord, to: Phase): void {
  const now = new Date().toISOString();
  const t = update.times;
  if (to === 'downloading') t.startedDownloadingTime ??= now;
  if (to === 'downloadComplete') t.downloadCompleteTime ??= now;
  if (to === 'verifying') t.startedApplyingImage ??= now;
  if (to === 'applyComplete') t.lastFirmwareUpdate = now;
}

function describeFailure(err: unknown): UpdateError {
  if (err instanceof UpdateFailure) return { code: err.code, message: err.message };
  const e = err as NodeJS.ErrnoException;
  return { code: 'internalError', message: e?.message ?? String(err) };
}
