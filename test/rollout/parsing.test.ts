import { describe, expect, it } from 'vitest';
import { checkRolloutName, checkTarget, formatDuration, parseDuration, parseRate, parseWaves } from '../../src/rollout/definition.js';
import { RolloutError } from '../../src/rollout/errors.js';

function refused(fn: () => unknown, words: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(RolloutError);
  expect((caught as RolloutError).code).toBe('badOption');
  expect((caught as Error).message).toMatch(words);
}

describe('rollout definition parsing', () => {
  it('reads shares, counts and all as cumulative waves', () => {
    expect(parseWaves('1%,10%,50%,100%')).toEqual([{ percent: 1 }, { percent: 10 }, { percent: 50 }, { percent: 100 }]);
    expect(parseWaves('5, 50, all')).toEqual([{ count: 5 }, { count: 50 }, { all: true }]);
    expect(parseWaves('0.5%,all')).toEqual([{ percent: 0.5 }, { all: true }]);
  });

  it('refuses waves that are not cumulative, mixed, empty or out of range, naming the part', () => {
    refused(() => parseWaves('10%,5%'), /cumulative.*'5%' after '10%'/);
    refused(() => parseWaves('5,5'), /cumulative/);
    refused(() => parseWaves('5%,50'), /mix/);
    refused(() => parseWaves('all,50'), /'all' can only be the last/);
    refused(() => parseWaves('0%'), /'0%'/);
    refused(() => parseWaves('150%'), /'150%'/);
    refused(() => parseWaves('1%,,2%'), /comma-separated/);
    refused(() => parseWaves('ten'), /'ten' is neither/);
    refused(() => parseWaves('0'), /'0' is neither/);
  });

  it('reads rates as a percentage or a fraction', () => {
    expect(parseRate('5%')).toBeCloseTo(0.05);
    expect(parseRate('0.2')).toBeCloseTo(0.2);
    expect(parseRate('100%')).toBe(1);
    refused(() => parseRate('0%'), /--halt-failure-rate '0%'/);
    refused(() => parseRate('120%'), /at most 100%/);
    refused(() => parseRate('5'), /5% or 0.05/);
  });

  it('reads durations with units, and refuses a bare number', () => {
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('10m')).toBe(600_000);
    expect(parseDuration('2h')).toBe(7_200_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    refused(() => parseDuration('90'), /--wave-timeout '90' is not a duration/);
    refused(() => parseDuration('10 minutes'), /not a duration/);
    refused(() => parseDuration('0s'), /must be from 1s/);
    expect(formatDuration(5_400_000)).toBe('1h30m');
    expect(formatDuration(90_000)).toBe('1m30s');
  });

  it('checks names and targets', () => {
    expect(checkRolloutName('fw-1-2-0')).toBe('fw-1-2-0');
    refused(() => checkRolloutName('Bad Name'), /lower-case/);
    refused(() => checkRolloutName('-x'), /starting with/);
    expect(checkTarget(" tags.site = 'lab' ")).toBe("tags.site = 'lab'");
    refused(() => checkTarget('SELECT * FROM devices'), /only the condition/);
    refused(() => checkTarget('  '), /query condition/);
  });
});

describe('piota rollout start --via', () => {
  it('takes job (default) or configuration, and refuses anything else naming both', async () => {
    const { definitionOf, rolloutStartCommand } = await import('../../src/cli/rollout-start.js');
    const { UsageError } = await import('../../src/cli/command.js');
    const base = { uri: 'https://fw.example/a.piota', version: '2', target: "tags.a = 'b'", waves: 'all', 'halt-failure-rate': '5%', 'wave-timeout': '10m' };
    expect(definitionOf(rolloutStartCommand, 'r', base).via).toBe('job');
    expect(definitionOf(rolloutStartCommand, 'r', { ...base, via: 'configuration' }).via).toBe('configuration');
    expect(() => definitionOf(rolloutStartCommand, 'r', { ...base, via: 'twin' })).toThrow(UsageError);
    expect(() => definitionOf(rolloutStartCommand, 'r', { ...base, via: 'twin' })).toThrow(/--via 'twin' must be job .* or configuration/);
  });
});
