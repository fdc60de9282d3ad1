import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureBuilt } from '../simulator/helpers.js';

// `piota simulate --image` refusing what it cannot boot, before it touches anything: the built CLI.
const bin = fileURLToPath(new URL('../../bin/piota.js', import.meta.url));
const simulate = (args: string[]) => spawnSync(process.execPath, [bin, 'simulate', ...args], { encoding: 'utf8', timeout: 60_000 });
const asRoot = process.getuid?.() === 0;
const haveTools = ['systemd-nspawn', 'sfdisk', 'mcopy', 'losetup'].every((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0);

let dir: string;
beforeAll(async () => {
  ensureBuilt();
  dir = await mkdtemp(join(tmpdir(), 'piota-simulate-image-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('piota simulate --image: what it refuses', () => {
  it('names a malformed --dropin (exit 2)', () => {
    const r = simulate(['--image', 'x.img', '--dir', join(dir, 'a'), '--hub-dir', join(dir, 'hub'), '--device', 'd1', '--dropin', 'nounit']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("--dropin 'nounit' must be UNIT=FILE");
  });

  it('--help describes the image mode', () => {
    const r = simulate(['--image', 'x.img', '--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('Usage: piota simulate --image IMG');
    expect(r.stdout).toContain('Host architecture only');
  });

  it.skipIf(!asRoot || !haveTools)('refuses an image that is not an A/B tryboot image, naming the missing partitions, and leaves nothing attached', async () => {
    const img = join(dir, 'plain.img');
    await writeFile(img, Buffer.alloc(0));
    spawnSync('truncate', ['-s', '8M', img]);
    const sf = spawnSync('sfdisk', ['--no-reread', '--no-tell-kernel', img], { input: 'label: dos\nstart=2048, type=83\n', encoding: 'utf8' });
    expect(sf.status, sf.stderr).toBe(0);
    const piDir = join(dir, 'plain');
    const r = simulate(['--image', img, '--dir', piDir, '--hub-dir', join(dir, 'hub'), '--device', 'd1']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('not an A/B tryboot image (partitions 2, 3, 5, 6, 7 missing');
    const loops = spawnSync('losetup', ['--associated', join(piDir, 'pi.img'), '--noheadings'], { encoding: 'utf8' });
    expect(loops.stdout.trim()).toBe('');
  });

  it.skipIf(!asRoot || !haveTools)('needs --image on the first run, and says so', () => {
    const piDir = join(dir, 'fresh');
    const r = simulate(['--image', join(dir, 'missing.img'), '--dir', piDir, '--hub-dir', join(dir, 'hub'), '--device', 'd1']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`--image ${join(dir, 'missing.img')}: no such file`);
    expect(existsSync(join(piDir, 'pi.img'))).toBe(false);
  });
});
