import { describe, expect, it } from 'vitest';
import { parseWaves } from '../../src/rollout/definition.js';
import { RolloutError } from '../../src/rollout/errors.js';
import { HubCallError } from '../../src/rollout/hub-port.js';
import { createPacer } from '../../src/rollout/pacer.js';
import { recordFromTags, recordToTags, type RolloutRecord } from '../../src/rollout/record.js';
import { applyEvent, isFinal } from '../../src/rollout/state-machine.js';

const record = (state: RolloutRecord['state']): RolloutRecord => ({
  schema: 1,
  definition: { name: 'r', release: { fwPackageUri: 'https://x/fw', version: '2', applyNow: false }, target: "tags.a = 'b'", waves: parseWaves('10%,all'), halt: { failureRate: 0.05, minFailed: 2 }, waveTimeoutMs: 60_000, connectTimeoutS: 30, via: 'job' },
  createdAt: '2026-01-01T00:00:00.000Z',
  targetedDevices: 10,
  state,
  reason: null,
  waves: [{ wave: 1, cumulativeSize: 1, devices: 0, stage: 'pending', jobId: null, configurationId: null, startedAt: null, endedAt: null, endReason: null }],
  decisions: [],
  controller: null,
  cleanedUp: false,
});

describe('the rollout state machine', () => {
  it('moves between running and paused, and into the final states, logging who and why', () => {
    const now = new Date('2026-01-01T01:00:00Z');
    const paused = applyEvent(record('running'), { type: 'pause', by: 'ops@laptop' }, now);
    expect(paused).toMatchObject({ state: 'paused', reason: 'paused by ops@laptop' });
    expect(paused.decisions.at(-1)).toEqual({ at: now.toISOString(), what: 'running → paused', why: 'requested by ops@laptop' });
    expect(applyEvent(paused, { type: 'continue', by: 'ops' }, now)).toMatchObject({ state: 'running', reason: null });
    expect(applyEvent(paused, { type: 'halt', reason: 'in wave 1: 2 failed' }, now)).toMatchObject({ state: 'halted', reason: 'in wave 1: 2 failed' });
    expect(applyEvent(record('running'), { type: 'abort', by: 'ops' }, now).state).toBe('aborted');
    for (const s of ['halted', 'completed', 'aborted'] as const) expect(isFinal(s)).toBe(true);
  });

  it('refuses what a state does not allow, naming the state', () => {
    for (const [state, type] of [['halted', 'continue'], ['completed', 'pause'], ['aborted', 'abort'], ['paused', 'complete'], ['running', 'continue']] as const) {
      let err: unknown;
      try {
        applyEvent(record(state), type === 'complete' ? { type, reason: 'x' } : { type, by: 'ops' }, new Date());
      } catch (e) {
        err = e;
      }
      expect(err, `${state} + ${type}`).toBeInstanceOf(RolloutError);
      expect((err as RolloutError).code).toBe('badState');
      expect((err as Error).message).toContain(`is ${state}`);
    }
  });

  it('keeps the record through twin tags (objects only, no lists), and refuses a newer schema', () => {
    const r = { ...applyEvent(record('running'), { type: 'pause', by: 'a' }, new Date('2026-01-01T00:00:00Z')), controller: { owner: 'h:1:ab', expiresAt: 1234 } };
    const tags = recordToTags(r, null);
    expect(JSON.stringify(tags)).not.toContain('[');
    expect(recordFromTags(JSON.parse(JSON.stringify(tags)))).toEqual(r);
    expect(() => recordFromTags({ piotaRolloutRecord: { schema: 2 } })).toThrow(/schema 2; this piota reads schema 1/);
  });
});

describe('the pacer', () => {
  it('spaces calls of one class at the share of the tier limit, and retries 429s with growing delays', async () => {
    let t = 0;
    const slept: number[] = [];
    const pacer = createPacer({ tier: 'S1', share: 0.5, now: () => t, sleep: async (ms) => void (slept.push(ms), (t += ms)), random: () => 1 });
    // S1 queries: 20/min, half of it: one every 6 s.
    for (let i = 0; i < 3; i++) await pacer.take('query');
    expect(slept).toEqual([6000, 6000]);
    let calls = 0;
    const result = await pacer.run('jobOperation', async () => {
      if (++calls < 3) throw new HubCallError('throttled', '429', 429, 'ThrottlingException');
      return 'ok';
    });
    expect(result).toBe('ok');
    expect(pacer.stats.jobOperation).toEqual({ calls: 3, throttled: 2 });
    // Back-offs of 1 s then 2 s (jitter at its top here), never shorter than the class's own
    // spacing (S1 jobs operations: 100/min, half of it: 1.2 s).
    expect(slept.slice(2)).toEqual([1200, 2000]);
    await expect(pacer.run('query', async () => Promise.reject(new HubCallError('notFound', 'gone', 404)))).rejects.toThrow('gone');
  });
});
