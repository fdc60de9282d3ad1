import { describe, expect, it } from 'vitest';
import { parseWaves } from '../../src/rollout/definition.js';
import { haltVerdict } from '../../src/rollout/halt-rule.js';
import { cumulativeWaveSizes, pickWave, stableOrder } from '../../src/rollout/plan.js';

const ids = (n: number) => Array.from({ length: n }, (_, i) => `pi-${i + 1}`);

describe('wave planning', () => {
  it('turns shares into cumulative device counts, rounding a share up', () => {
    expect(cumulativeWaveSizes(parseWaves('1%,10%,50%,100%'), 200)).toEqual([2, 20, 100, 200]);
    expect(cumulativeWaveSizes(parseWaves('1%,10%,50%,100%'), 50)).toEqual([1, 5, 25, 50]);
    expect(cumulativeWaveSizes(parseWaves('5,50,all'), 30)).toEqual([5, 30, 30]);
    expect(cumulativeWaveSizes(parseWaves('1%,100%'), 0)).toEqual([0, 0]);
  });

  it('orders devices stably: the same whatever the input order, different per rollout', () => {
    const a = stableOrder('r1', ids(50));
    expect(stableOrder('r1', [...ids(50)].reverse())).toEqual(a);
    expect(new Set(a)).toEqual(new Set(ids(50)));
    expect(stableOrder('r2', ids(50))).not.toEqual(a);
    // Not the registry's order: the canary is not simply pi-1, pi-2.
    expect(a.slice(0, 5)).not.toEqual(ids(5));
  });

  it('picks the next devices up to the wave size, the same ones when resumed', () => {
    const all = ids(100);
    const first = pickWave('r', all, 0, 10);
    expect(first).toHaveLength(10);
    const rest = all.filter((id) => !first.includes(id));
    const second = pickWave('r', rest, 10, 50);
    expect(second).toHaveLength(40);
    expect(second.some((id) => first.includes(id))).toBe(false);
    // A controller that died after tagging 15 of the 40 picks the remaining 25, the same ones.
    const tagged = second.slice(0, 15);
    const resumed = pickWave('r', rest.filter((id) => !tagged.includes(id)), 25, 50);
    expect(resumed).toEqual(second.slice(15));
    expect(pickWave('r', rest, 60, 50)).toEqual([]);
  });
});

describe('the halt rule', () => {
  const rule = { failureRate: 0.05, minFailed: 2 };

  it('halts when the rate reaches the threshold with enough failures', () => {
    const v = haltVerdict({ succeeded: 38, failed: 2, offline: 0, running: 0 }, rule);
    expect(v.halt).toBe(true);
    expect(v.failureRate).toBeCloseTo(0.05);
    expect(v.reason).toMatch(/2 failed of 40 finished \(5%\)/);
  });

  it('does not halt below the rate, nor at the rate with fewer failures than the minimum', () => {
    expect(haltVerdict({ succeeded: 39, failed: 1, offline: 0, running: 0 }, rule).halt).toBe(false);
    const one = haltVerdict({ succeeded: 0, failed: 1, offline: 0, running: 0 }, rule);
    expect(one.halt).toBe(false);
    expect(one.reason).toMatch(/fewer than --halt-min-failed 2/);
    expect(haltVerdict({ succeeded: 0, failed: 1, offline: 0, running: 0 }, { failureRate: 0.05, minFailed: 1 }).halt).toBe(true);
  });

  it('never counts offline or running devices as failures', () => {
    const v = haltVerdict({ succeeded: 20, failed: 1, offline: 100, running: 100 }, rule);
    expect(v.failureRate).toBeCloseTo(1 / 21);
    expect(v.halt).toBe(false);
    expect(haltVerdict({ succeeded: 0, failed: 0, offline: 5, running: 5 }, rule)).toMatchObject({ halt: false, failureRate: null });
  });
});
