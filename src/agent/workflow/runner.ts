import type { Logger } from 'pino';
import type { DeviceState, UpdateRecord } from '../device-state.js';
import type { PhaseContext, WorkflowPorts, WorkflowSettings } from './context.js';
import { isCancellable, isTerminal, MAX_ENTRIES, nextPhase, reportedStatus, stampsOf, workOf, type Phase, type PhaseOutcome } from './spec.js';
import { toUpdateError, type UpdateError } from './update-errors.js';

export interface RunnerDeps {
  state: DeviceState;
  /** Persists `state`: the live state, or a picture that is not (yet) the live one. */
  saveState(state: DeviceState): Promise<void>;
  /** A status changed: report it. */
  statusChanged(): void;
  /** Re-reads what a phase's work may have changed (committed slot, running version), before the new phase shows. */
  refreshInventory(): Promise<void>;
  logger: Logger;
  settings: WorkflowSettings;
  ports: WorkflowPorts;
}

class Cancelled extends Error {}
class Stopping extends Error {}

/** After a failed save (a full state disk), the workflow tries again: 2 s, doubling to a minute. */
const SAVE_RETRY_FIRST_MS = 2000;
const SAVE_RETRY_MAX_MS = 60_000;

const CANCELLED: UpdateError = { code: 'cancelled', message: 'cancelled by firmwareUpdateCancel before applying started' };

/**
 * Drives the current update through the workflow table (spec.ts), one phase at a time. Every
 * transition is persisted before the next phase's work starts, so the state file is the single
 * source of truth; errors are mapped to the twin's codes here, once.
 */
export class UpdateRunner {
  private running: Promise<void> | null = null;
  private abort: AbortController | null = null;
  private stopped = false;
  /** A new update arrived while the last one was winding down: drive again when done. */
  private startAgain = false;
  /** firmwareUpdateCancel was accepted: resolves once the cancel is persisted. */
  private cancelRequest: { done: Promise<void>; resolve: () => void } | null = null;
  /**
   * Set, synchronously, the moment the runner decides to leave the cancellable phases: from then on
   * a cancel is refused, so an answered cancel never races a transition into applying.
   */
  private pastCancelFor: string | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private saveFailures = 0;

  constructor(private readonly deps: RunnerDeps) {}

  /** Starts driving the current update if there is one that has not ended (no-op if already running). */
  start(resumed: boolean): void {
    if (this.stopped) return;
    if (this.running) {
      this.startAgain = true;
      return;
    }
    this.running = this.drive(resumed)
      .catch((err: unknown) => {
        // Only a save can fail here (the phases' own errors are outcomes): try again later, from
        // the phase in memory, which is the last one persisted.
        const delay = Math.min(SAVE_RETRY_MAX_MS, SAVE_RETRY_FIRST_MS * 2 ** this.saveFailures++);
        this.deps.logger.error({ err: (err as Error).message, retryInMs: delay }, 'the update workflow could not persist its state; will try again');
        this.retryTimer = setTimeout(() => {
          this.retryTimer = null;
          this.start(false);
        }, delay);
      })
      .finally(() => {
        this.running = null;
        if (this.startAgain) {
          this.startAgain = false;
          this.start(false);
        }
      });
  }

  /**
   * firmwareUpdateCancel. Resolves true once the update is cancelled and that is persisted; false when
   * it is too late (applying has started, or is about to). Decided synchronously, so no transition
   * can slip in between the answer and the cancel.
   */
  cancel(): Promise<boolean> {
    const u = this.deps.state.update;
    if (!u || isTerminal(u.phase) || !isCancellable(u.phase) || this.pastCancelFor === u.updateId || this.stopped) return Promise.resolve(false);
    if (!this.cancelRequest) {
      let resolve!: () => void;
      const done = new Promise<void>((r) => (resolve = r));
      this.cancelRequest = { done, resolve };
    }
    const { done } = this.cancelRequest;
    this.abort?.abort(new Cancelled('cancelled'));
    if (!this.running) this.start(false);
    return done.then(() => true);
  }

  /** Persists the live state. */
  private save(): Promise<void> {
    return this.deps.saveState(this.deps.state);
  }

  /** Stops the current phase's work without a transition (daemon shutdown); it resumes at the next start. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
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
        await this.save();
      }
      const outcome = await this.runPhase(update, fromDisk);
      if (outcome === 'stopped') return;
      fromDisk = false;
      await this.transition(update, outcome);
    }
  }

  private async runPhase(update: UpdateRecord, resumed: boolean): Promise<PhaseOutcome | 'stopped'> {
    const phase = update.phase;
    if (this.cancelRequest && isCancellable(phase)) return { event: 'cancel', error: CANCELLED };
    const entries = update.entries[phase] ?? 0;
    if (entries > MAX_ENTRIES) {
      return { event: 'loop', error: { code: 'bootLoop', message: `the update entered '${phase}' ${entries} times; stopped to break the loop` } };
    }
    const work = workOf(phase);
    if (!work) throw new Error(`workflow: phase '${phase}' has no work`);
    const abort = new AbortController();
    this.abort = abort;
    const ctx: PhaseContext = {
      settings: this.deps.settings,
      ports: this.deps.ports,
      state: this.deps.state,
      update,
      resumed,
      signal: abort.signal,
      save: () => this.save(),
    };
    try {
      return await work(ctx);
    } catch (err) {
      if (abort.signal.reason instanceof Stopping) return 'stopped';
      if (this.cancelRequest && isCancellable(phase)) return { event: 'cancel', error: CANCELLED };
      const error = toUpdateError(err);
      if (error.code === 'internalError') this.deps.logger.error({ err: (err as Error)?.stack ?? String(err), phase }, 'unexpected error in the update workflow');
      return { event: 'fail', error };
    } finally {
      this.abort = null;
    }
  }

  private async transition(update: UpdateRecord, proposed: PhaseOutcome): Promise<void> {
    const from = update.phase;
    // Decided before any await: a cancel accepted up to here wins over the work's own outcome.
    let outcome = proposed;
    if (this.cancelRequest && isCancellable(from)) outcome = { event: 'cancel', error: CANCELLED };
    const to = nextPhase(from, outcome.event);
    if (!isCancellable(to)) this.pastCancelFor = update.updateId;
    await this.deps.refreshInventory();
    // The new phase is built on a copy and adopted only once it is on disk: a save that fails (a full
    // state disk) leaves memory, and so the twin, at the last phase that really was persisted.
    const next = structuredClone(update);
    next.phase = to;
    if (outcome.error) next.error = next.error && from === 'rollingBack' ? { code: next.error.code, message: `${next.error.message}; then: ${outcome.error.message}` } : outcome.error;
    next.entries[to] = (next.entries[to] ?? 0) + 1;
    stamp(next, to, new Date(this.deps.ports.clock.now()).toISOString());
    if (isTerminal(to) && to !== 'applyComplete') await this.pointTrybootBack(update);
    await this.deps.saveState({ ...this.deps.state, update: next });
    this.saveFailures = 0;
    Object.assign(update, next);
    if (isTerminal(to) && this.cancelRequest) {
      this.cancelRequest.resolve();
      this.cancelRequest = null;
    }
    const level = to === 'applyFailed' || to === 'downloadFailed' ? 'warn' : 'info';
    this.deps.logger[level](
      { updateId: update.updateId, from, to, event: outcome.event, status: reportedStatus(to), error: update.error ?? undefined },
      `update ${to}`,
    );
    this.deps.statusChanged();
  }

  /**
   * An update that ends in failure leaves `[tryboot]` pointing at the committed slot, so a stray
   * tryboot reboot can never boot the slot that failed or that the next update rewrites. Best effort:
   * the next download points it back again before it writes.
   */
  private async pointTrybootBack(update: UpdateRecord): Promise<void> {
    try {
      await this.deps.ports.boot.clearTrial();
    } catch (err) {
      this.deps.logger.warn({ updateId: update.updateId, err: (err as Error).message }, 'could not point [tryboot] back at the committed slot');
    }
  }
}

function stamp(update: UpdateRecord, to: Phase, now: string): void {
  for (const field of stampsOf(to)) {
    // lastFirmwareUpdate marks the end of each successful update; the others, the first entry.
    if (field === 'lastFirmwareUpdate') update.times[field] = now;
    else update.times[field] ??= now;
  }
}
