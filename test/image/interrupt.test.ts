import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { standinImage } from '../helpers/standin-image.js';
import { imageSkipReason, keysAndCa, loopsOn, repo, sha256File } from './fixtures.js';

// SIGTERM in the middle of a conversion (loop devices attached, the output half written): the
// converter releases every loop device and mount, deletes the partial output and exits 143.
const skip = imageSkipReason();

describe.skipIf(skip)(`piota image convert interrupted${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let work: string;
  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('cleans up on SIGTERM: no loop device, no mount, no partial output; the input unchanged', { timeout: 300_000 }, async () => {
    const input = await standinImage();
    const before = sha256File(input);
    work = await mkdtemp(join(tmpdir(), 'piota-image-interrupt-'));
    const keys = keysAndCa(work);
    // Only checked to exist before the signal: the package is unpacked long after the partitioning.
    const deb = join(work, 'piota.deb');
    await writeFile(deb, 'stand-in\n');
    const out = join(work, 'out.img');
    const child = spawn(process.execPath, [join(repo, 'bin/piota.js'), 'image', 'convert', input, '--out', out, '--deb', deb, '--model', 'm', '--trusted-key', keys.pub, '--root-size', '512M'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (c: Buffer) => {
        stdout += c.toString();
        if (stdout.includes('7 partitions')) resolve();
      });
      void exited.then(() => reject(new Error(`convert ended before the signal: ${stderr}`)));
    });
    child.kill('SIGTERM');
    expect(await exited).toBe(143);
    // At once: the converter has detached everything before it exits, also a device that an attach
    // under way when the signal came had made (test/image/scratch-signals.test.ts).
    expect(loopsOn(join(work, '.out.img.partial'))).toEqual([]);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(work).filter((f) => f.startsWith('.'))).toEqual([]);
    expect(sha256File(input)).toBe(before);
  });
});
