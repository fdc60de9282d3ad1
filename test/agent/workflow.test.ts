import { describe, it, expect } from 'vitest';
import { TRANSITIONS, CANCELLABLE, nextPhase } from '../../src/agent/workflow.js';
import { PHASE_WORK } from '../../src/agent/phases.js';
import { TERMINAL_PHASES, reportedStatus, type Phase } from '../../src/agent/device-state.js';

const phases = Object.keys(TRANSITIONS) as Phase[];

describe('the workflow table', () => {
  it('gives every non-terminal phase its work and a way to fail', () => {
    for (const phase of phases) {
      if (TERMINAL_PHASES.includes(phase)) {
        expect(PHASE_WORK[phase], phase).toBeUndefined();
        expect(Object.keys(TRANSITIONS[phase]), phase).toHaveLength(0);
      } else {
        expect(typeof PHASE_WORK[phase], phase).toBe('function');
        expect(TRANSITIONS[phase].fail, phase).toBeDefined();
      }
    }
  });

  it('reaches every terminal phase from waiting, and nothing unreachable', () => {
    const seen = new Set<Phase>(['waiting']);
    const queue: Phase[] = ['waiting'];
    while (queue.length) {
      for (const next of Object.values(TRANSITIONS[queue.shift()!])) {
        if (!seen.has(next!)) {
          seen.add(next!);
          queue.push(next!);
        }
      }
    }
    expect([...seen].sort()).toEqual([...phases].sort());
  });

  it('fails downloads as downloadFailed and anything after verification as applyFailed', () => {
    for (const p of ['waiting', 'downloading', 'downloadComplete'] as Phase[]) expect(nextPhase(p, 'fail')).toBe('downloadFailed');
    for (const p of ['verifying', 'rebooting'] as Phase[]) expect(nextPhase(p, 'fail')).toBe('applyFailed');
    expect(reportedStatus(nextPhase('trial', 'unhealthy'))).toBe('applyFailed');
  });

  it('allows cancelling only before applying starts', () => {
    for (const p of phases) {
      expect(TRANSITIONS[p].cancel !== undefined, p).toBe(CANCELLABLE.includes(p));
      if (CANCELLABLE.includes(p)) expect(reportedStatus(p)).not.toBe('applying');
    }
  });

  it('names an impossible transition', () => {
    expect(() => nextPhase('applyComplete', 'start')).toThrow(/no transition from 'applyComplete' on 'start'/);
  });
});
