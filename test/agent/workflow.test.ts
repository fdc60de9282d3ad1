import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { WORKFLOW, PHASES, isCancellable, isTerminal, nextPhase, reportedStatus, workOf, stampsOf, type Phase, type WorkflowEvent } from '../../src/agent/workflow/spec.js';
import { UPDATE_ERROR_CODES } from '../../src/agent/workflow/update-errors.js';

const rows = (p: Phase) => (WORKFLOW[p] as { on?: Partial<Record<WorkflowEvent, Phase>> }).on ?? {};

describe('the workflow table', () => {
  it('gives every non-terminal phase its work, a way to fail and a loop exit; terminal phases have neither', () => {
    for (const phase of PHASES) {
      if (isTerminal(phase)) {
        expect(workOf(phase), phase).toBeUndefined();
        expect(Object.keys(rows(phase)), phase).toHaveLength(0);
      } else {
        expect(typeof workOf(phase), phase).toBe('function');
        expect(rows(phase).fail, phase).toBeDefined();
        expect(rows(phase).loop, phase).toBeDefined();
      }
    }
  });

  it('reaches every phase from waiting, and nothing unreachable', () => {
    const seen = new Set<Phase>(['waiting']);
    const queue: Phase[] = ['waiting'];
    while (queue.length) {
      for (const next of Object.values(rows(queue.shift()!))) {
        if (!seen.has(next)) {
          seen.add(next);
          queue.push(next);
        }
      }
    }
    expect([...seen].sort()).toEqual([...PHASES].sort());
  });

  it('fails downloads as downloadFailed and anything after verification as applyFailed', () => {
    for (const p of ['waiting', 'downloading', 'downloadComplete'] as Phase[]) expect(nextPhase(p, 'fail')).toBe('downloadFailed');
    for (const p of ['verifying', 'rebooting', 'checkingBoot'] as Phase[]) expect(nextPhase(p, 'fail')).toBe('applyFailed');
    for (const p of ['trial', 'committing'] as Phase[]) expect(reportedStatus(nextPhase(p, 'fail'))).toBe('applyFailed');
  });

  it('keeps requesting the reboot and judging the boot in two phases', () => {
    expect(nextPhase('rebooting', 'restarted')).toBe('checkingBoot');
    expect(rows('rebooting').bootedTrial).toBeUndefined();
    expect(nextPhase('checkingBoot', 'bootedTrial')).toBe('trial');
    expect(nextPhase('checkingBoot', 'fellBack')).toBe('applyFailed');
  });

  it('allows cancelling only before applying starts', () => {
    expect(PHASES.filter(isCancellable)).toEqual(['waiting', 'downloading', 'downloadComplete']);
    for (const p of PHASES.filter(isCancellable)) expect(reportedStatus(p)).not.toBe('applying');
  });

  it('stamps each timestamp in exactly one phase', () => {
    const stamped = PHASES.flatMap((p) => stampsOf(p));
    expect(stamped.sort()).toEqual(['downloadCompleteTime', 'lastFirmwareUpdate', 'startedApplyingImage', 'startedDownloadingTime']);
    expect(stampsOf('applyComplete')).toEqual(['lastFirmwareUpdate']);
  });

  it('names an impossible transition', () => {
    expect(() => nextPhase('applyComplete', 'start')).toThrow(/no transition from 'applyComplete' on 'start'/);
  });
});

describe('the error codes', () => {
  it('are exactly the codes in the docs table', () => {
    const doc = readFileSync(new URL('../../docs/update-workflow.md', import.meta.url), 'utf8');
    const section = doc.slice(doc.indexOf('### Error codes'), doc.indexOf('\n## ', doc.indexOf('### Error codes')));
    const documented = [...section.matchAll(/^\| `([a-zA-Z0-9]+)` \|/gm)].map((m) => m[1]).sort();
    expect(documented).toEqual(Object.keys(UPDATE_ERROR_CODES).sort());
  });

  it('each has its source in docs/architecture.md', () => {
    const doc = readFileSync(new URL('../../docs/architecture.md', import.meta.url), 'utf8');
    const table = doc.slice(doc.indexOf('| raised by |'), doc.indexOf('\n\n', doc.indexOf('| raised by |')));
    const named = new Set([...table.split('\n').map((row) => row.split('|')[3] ?? '').join(' ').matchAll(/`([a-zA-Z0-9]+)`/g)].map((m) => m[1]));
    expect([...named].sort()).toEqual(Object.keys(UPDATE_ERROR_CODES).sort());
  });
});
