import { describe, expect, it } from 'vitest';
// The benchmark's own arithmetic (it stays out of CI; this is what CI checks of it): medians and
// percentiles, the goals it reports met or missed, and the plot it draws.
// @ts-expect-error plain ESM JavaScript without types
import { median, percentile } from '../../scripts/bench/measure.js';
// @ts-expect-error plain ESM JavaScript without types
import { goalsTable, installTable } from '../../scripts/bench/report.js';
// @ts-expect-error plain ESM JavaScript without types
import { throughputSvg } from '../../scripts/bench/plot.js';

const row = (key: string, wall: number, cpu: number, extra: Record<string, number> = {}) => ({ key, name: key, wall, cpu, rssMiB: 12, ...extra });
const install = (sizeMiB: number, piota: { wall: number; cpu: number; growthMiB: number }) => ({
  sizeMiB,
  bundleSize: sizeMiB * 2 ** 20,
  slotKind: 'loop device',
  rows: [row('pipeline', 10, 8), row('piota', piota.wall, piota.cpu, { idleRssMiB: 68, growthMiB: piota.growthMiB }), row('piotaReadback', piota.wall + 1, piota.cpu + 1, { readbackS: 1 })],
});
const verdict = (table: string, goal: RegExp) => table.split('\n').find((l) => goal.test(l))?.split('|').at(-2)?.trim();

describe('the benchmark report', () => {
  it('medians and percentiles', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([NaN, 5])).toBe(5);
    const hundred = Array.from({ length: 100 }, (_, i) => 100 - i);
    expect(percentile(hundred, 50)).toBe(50);
    expect(percentile(hundred, 99)).toBe(99);
    expect(percentile([7], 99)).toBe(7);
  });

  it('reports each goal met or missed from the figures of the run, as ratios to the pipeline', () => {
    const hub = { p99Ms: 40, applyS: 0.2 };
    const good = goalsTable([install(256, { wall: 5, cpu: 4, growthMiB: 28 }), install(1024, { wall: 5.5, cpu: 4.8, growthMiB: 30 }), install(4096, { wall: 5, cpu: 4, growthMiB: 31 })], hub);
    expect(verdict(good, /1024 MiB install ≤ 0.55×/)).toBe('met');
    expect(verdict(good, /with read-back/)).toBe('met');
    expect(verdict(good, /CPU ≤ 0.6×/)).toBe('met');
    expect(verdict(good, /memory growth over idle ≤ 32 MiB \(4096 MiB image\)/)).toBe('met');
    expect(verdict(good, /growth differs < 5 MiB between 256 MiB and 4096 MiB/)).toBe('met');
    expect(verdict(good, /firmwareUpdate p99/)).toBe('met');
    const bad = goalsTable([install(256, { wall: 6, cpu: 5, growthMiB: 20 }), install(1024, { wall: 6, cpu: 5, growthMiB: 30 }), install(4096, { wall: 6, cpu: 5, growthMiB: 33 })], { p99Ms: 51, applyS: 2.5 });
    expect(verdict(bad, /1024 MiB install ≤ 0.55×/)).toBe('**missed**');
    expect(verdict(bad, /CPU ≤ 0.6×/)).toBe('**missed**');
    expect(verdict(bad, /memory growth over idle/)).toBe('**missed**');
    expect(verdict(bad, /growth differs/)).toBe('**missed**');
    expect(verdict(bad, /firmwareUpdate p99/)).toBe('**missed**');
    expect(verdict(bad, /applyComplete/)).toBe('**missed**');
    expect(installTable([install(1024, { wall: 5, cpu: 4, growthMiB: 28 })])).toContain('| piota | 5.00 | 4.00 | 12 | 0.50 | 0.50 | 68 → +28 |');
  });

  it('draws the throughput plot as an SVG of one polyline per series, scaled to the data', () => {
    const samples = Array.from({ length: 51 }, (_, i) => [i * 0.02, i * 2 * 2 ** 20]); // 100 MiB/s
    const svg = throughputSvg([{ label: 'piota', samples }]);
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    expect(svg.match(/<polyline/g)).toHaveLength(1);
    const points = /points="([^"]+)"/.exec(svg)![1].split(' ').map((p) => p.split(',').map(Number));
    // A steady 100 MiB/s draws a flat line.
    expect(new Set(points.map(([, y]) => y)).size).toBe(1);
    expect(svg).toContain('>piota<');
  });
});
