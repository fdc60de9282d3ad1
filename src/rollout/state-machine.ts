import { RolloutError } from './errors.js';
import type { RolloutRecord, RolloutState } from './record.js';

/**
 * The rollout's states and the only ways between them. `halted`, `completed` and `aborted` are
 * final: a halted release is fixed by a new rollout (another name), not by resuming the old one,
 * so the record keeps saying why it stopped.
 *
 *   running ──pause──▶ paused ──continue──▶ running
 *   running|paused ──halt (the rule fired)──▶ halted
 *   running|paused ──abort──▶ aborted
 *   running ──complete (last wave done)──▶ completed
 */
export type RolloutEvent =
  | { type: 'pause'; by: string }
  | { type: 'continue'; by: string }
  | { type: 'abort'; by: string }
  | { type: 'halt'; reason: string }
  | { type: 'complete'; reason: string };

const NEXT: Record<RolloutState, Partial<Record<RolloutEvent['type'], RolloutState>>> = {
  running: { pause: 'paused', abort: 'aborted', halt: 'halted', complete: 'completed' },
  paused: { continue: 'running', abort: 'aborted', halt: 'halted' },
  halted: {},
  completed: {},
  aborted: {},
};

export function isFinal(state: RolloutState): boolean {
  return Object.keys(NEXT[state]).length === 0;
}

/** The record after the event, with the decision logged; a RolloutError('badState') if the state refuses it. */
export function applyEvent(record: RolloutRecord, event: RolloutEvent, now: Date): RolloutRecord {
  const to = NEXT[record.state][event.type];
  if (!to) {
    throw new RolloutError('badState', `rollout '${record.definition.name}' is ${record.state}${record.reason ? ` (${record.reason})` : ''}: it cannot ${event.type === 'continue' ? 'continue' : event.type}`);
  }
  const reason =
    event.type === 'halt' || event.type === 'complete' ? event.reason
    : event.type === 'continue' ? null
    : `${event.type === 'pause' ? 'paused' : 'aborted'} by ${event.by}`;
  const why = event.type === 'halt' || event.type === 'complete' ? event.reason : `requested by ${event.by}`;
  return {
    ...record,
    state: to,
    reason,
    decisions: [...record.decisions, { at: now.toISOString(), what: `${record.state} → ${to}`, why }],
  };
}

/** Appends a decision (wave started, skipped, ended; controller took over) to the record. */
export function logDecision(record: RolloutRecord, what: string, why: string, now: Date): RolloutRecord {
  return { ...record, decisions: [...record.decisions, { at: now.toISOString(), what, why }] };
}
