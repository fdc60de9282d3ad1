import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { syntheticPair } from './synthetic.js';

// The built command, as a release engineer runs it (npm test builds before vitest runs).
const bin = fileURLToPath(new URL('../../bin/piota.js', import.meta.url));
let dir: string;
const piota = (...args: string[]) => {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', cwd: dir });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
};
const create = (version: string, image: string, out: string, ...more: string[]) =>
  piota('bundle', 'create', '--version', version, '--compatible', 'pi', '--payload', `rootfs=${image}`, '--chunk-size', '64K', '--out', out, ...more);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'piota-adaptive-cli-'));
  const pair = syntheticPair();
  await writeFile(join(dir, 'r1.img'), pair.release1);
  await writeFile(join(dir, 'r2.img'), pair.release2);
  for (const [v, img, out, ...more] of [['1', 'r1.img', 'r1.piota', '--format', '2'], ['2', 'r2.img', 'r2.piota', '--format', '2'], ['2', 'r2.img', 'r2-v1.piota', '--format', '1']]) {
    const r = create(v, img, out, ...more);
    expect(r.status, r.stderr).toBe(0);
  }
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('piota bundle create --format', () => {
  it('format 2 says so and names its block index; info shows the same', () => {
    const r = create('2', 'r2.img', 'again.piota', '--format', '2', '--unit-size', '8K');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/format 2/);
    expect(r.stdout).toMatch(/block index .* \(4096-byte blocks, 8192-byte units\)/);
    const info = JSON.parse(piota('bundle', 'info', 'again.piota', '--json').stdout);
    expect(info.formatVersion).toBe(2);
    expect(info.payloads[0].blocks).toMatchObject({ blockSize: 4096, unitSize: 8192 });
    expect(info.chunksEnd).toBeLessThan(info.bundleSize);
  });

  it('makes format 2 by default (adaptive-capable), format 1 with --format 1, and --help says which', () => {
    const byDefault = create('2', 'r2.img', 'default.piota');
    expect(byDefault.status, byDefault.stderr).toBe(0);
    expect(byDefault.stdout).toMatch(/, format 2\n/);
    expect(JSON.parse(piota('bundle', 'info', 'default.piota', '--json').stdout).formatVersion).toBe(2);
    const v1 = JSON.parse(piota('bundle', 'info', 'r2-v1.piota', '--json').stdout);
    expect(v1.formatVersion).toBe(1);
    expect(v1.chunksEnd).toBe(v1.bundleSize);
    const help = piota('bundle', 'create', '--help');
    expect(help.stdout).toMatch(/--format 1\|2\s+bundle format \(default 2\)/);
    expect(help.stdout).toMatch(/build 1 for such fleets/);
  });

  // Exit 2: a usage error caught while reading the options; exit 1: refused by createBundle.
  it.each([
    [['--format', '3'], 2, /--format must be 1 or 2, got '3'/],
    [['--format', '1', '--unit-size', '8K'], 2, /--unit-size needs --format 2/],
    [['--format', '2', '--unit-size', '6K'], 1, /unit size must be a multiple of 4096/],
    [['--format', '2', '--unit-size', '64K'], 2, /--unit-size must be from 4096 bytes/],
  ])('refuses %j with a message naming it', (args, status, message) => {
    const r = create('2', 'r2.img', 'bad.piota', ...(args as string[]));
    expect(r.status).toBe(status);
    expect(r.stderr).toMatch(message as RegExp);
  });
});

describe('piota bundle diff', () => {
  it('predicts a small share for a one-package change, in text and JSON', () => {
    const text = piota('bundle', 'diff', 'r1.piota', 'r2.piota');
    expect(text.status, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/adaptive download .* of the full download/);
    const r = JSON.parse(piota('bundle', 'diff', 'r1.piota', 'r2.piota', '--json').stdout);
    expect(r.fullBytes).toBeGreaterThan(r.adaptiveBytes);
    expect(r.share).toBeCloseTo(r.adaptiveBytes / r.fullBytes, 10);
    expect(r.share).toBeLessThan(0.3);
    expect(r.payloads[0].reusedBytes).toBeGreaterThan(0);
    // Against itself, nothing but the header and the index is downloaded.
    const same = JSON.parse(piota('bundle', 'diff', 'r2.piota', 'r2.piota', '--json').stdout);
    expect(same.payloads[0].fetchBytes).toBe(0);
  });

  it('a format 1 bundle: exit 1 and a message that says to make format 2', () => {
    const r = piota('bundle', 'diff', 'r1.piota', 'r2-v1.piota');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/format 1 bundle without block indexes: make it with --format 2/);
  });
});
