import { describe, it, expect } from 'vitest';
import { retryDelayMs } from '../../src/download/retry-policy.js';
import { seeded } from '../helpers/seeded-random.js';

const policy = { firstDelayMs: 1000, maxDelayMs: 60_000 };

describe('retryDelayMs (exponential back-off with equal jitter)', () => {
  it('stays within [ceiling/2, ceiling] for each attempt, the ceiling doubling up to maxDelayMs', () => {
    const random = seeded(42);
    for (let attempt = 1; attempt <= 12; attempt++) {
      const ceiling = Math.min(60_000, 1000 * 2 ** (attempt - 1));
      const samples = Array.from({ length: 2000 }, () => retryDelayMs(attempt, policy, random));
      expect(Math.min(...samples)).toBeGreaterThanOrEqual(Math.floor(ceiling / 2));
      expect(Math.max(...samples)).toBeLessThanOrEqual(ceiling);
      // Spread over the whole upper half, not bunched: the point of the jitter.
      expect(Math.min(...samples)).toBeLessThan(ceiling * 0.52);
      expect(Math.max(...samples)).toBeGreaterThan(ceiling * 0.98);
      const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
      expect(mean / ceiling).toBeGreaterThan(0.72);
      expect(mean / ceiling).toBeLessThan(0.78);
      expect(samples.every(Number.isInteger)).toBe(true);
    }
  });

  it('a fleet retrying after the same failure does not come back in lockstep', () => {
    // 1000 devices, each its own generator: the third retry lands on hundreds of distinct instants.
    const delays = Array.from({ length: 1000 }, (_, device) => retryDelayMs(3, policy, seeded(device + 1)));
    expect(new Set(delays).size).toBeGreaterThan(800);
    // A quarter of the window [2000, 4000] holds about a quarter of the fleet.
    const firstQuarter = delays.filter((d) => d < 2500).length;
    expect(firstQuarter).toBeGreaterThan(150);
    expect(firstQuarter).toBeLessThan(350);
  });

  it('never passes maxDelayMs, even for a huge attempt number or a generator out of range', () => {
    expect(retryDelayMs(5000, policy, () => 0.999999)).toBeLessThanOrEqual(60_000);
    expect(retryDelayMs(5000, policy, () => 7)).toBe(60_000);
    expect(retryDelayMs(5000, policy, () => -3)).toBe(30_000);
    expect(retryDelayMs(1, { firstDelayMs: 1001, maxDelayMs: 1001 }, () => 0.9999999)).toBeLessThanOrEqual(1001);
  });

  it('refuses nonsense with a message that names it', () => {
    expect(() => retryDelayMs(0, policy)).toThrow(/attempt must be an integer from 1 on, got 0/);
    expect(() => retryDelayMs(1.5, policy)).toThrow(/attempt/);
    expect(() => retryDelayMs(1, { firstDelayMs: -1, maxDelayMs: 10 })).toThrow(/firstDelayMs/);
    expect(() => retryDelayMs(1, { firstDelayMs: 100, maxDelayMs: 10 })).toThrow(/maxDelayMs must be a finite number >= firstDelayMs \(100\), got 10/);
  });
});
