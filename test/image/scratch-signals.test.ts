import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repo } from './fixtures.js';

// A signal that comes while `losetup --find --show` runs must not leave a loop device behind: the
// attach is let finish (and then undone), and release() detaches any device still over the file
// that the command writes. Real loop devices, so root only.
const scratchJs = join(repo, 'dist/image/scratch.js');
const skip =
  process.getuid?.() !== 0
    ? 'needs root (loop devices)'
    : !existsSync(scratchJs)
      ? 'dist/ is not built (npm run build)'
      : spawnSync('sh', ['-c', 'command -v losetup']).status !== 0
        ? 'losetup is missing'
        : undefined;

function loopsOver(file: string): string[] {
  const r = spawnSync('losetup', ['--list', '--noheadings', '--output', 'NAME', '--associated', file], { encoding: 'utf8' });
  return r.stdout.split('\n').map((l) => l.trim()).filter(Boolean);
}

/** Runs `body` in a child that holds a Scratch with its signal handlers; resolves with its exit code. */
function child(body: string, file: string, env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; stderr: string }> {
  const script = `import { Scratch } from ${JSON.stringify(scratchJs)};\nimport { spawnSync } from 'node:child_process';\nconst file = process.argv[1];\nconst scratch = new Scratch();\nscratch.releaseOnSignals();\n${body}`;
  const c = spawn(process.execPath, ['--input-type=module', '-e', script, file], { stdio: ['ignore', 'ignore', 'pipe'], env });
  let stderr = '';
  c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => c.on('close', (code) => resolve({ code, stderr })));
}

describe.skipIf(skip)(`Scratch under a signal${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let work: string;
  let file: string;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'piota-scratch-signals-'));
    file = join(work, 'disk.img');
    await writeFile(file, '');
    await truncate(file, 8 << 20);
  });
  afterAll(async () => {
    for (const dev of file ? loopsOver(file) : []) spawnSync('losetup', ['--detach', dev]);
    if (work) await rm(work, { recursive: true, force: true });
  });

  // SIGTERM at a few moments around the attach: before losetup runs, while it runs, after.
  it.each([0, 5, 50])('SIGTERM %i ms after an attach starts: exits 143, no loop device left over the file', { timeout: 30_000 }, async (ms) => {
    const r = await child(`void scratch.loop(file, 1 << 20, 4 << 20, true).catch(() => undefined);\nsetTimeout(() => process.kill(process.pid, 'SIGTERM'), ${ms});\nsetTimeout(() => {}, 60_000);`, file);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(143);
    expect(loopsOver(file)).toEqual([]);
  });

  // The narrow window, made wide: the real losetup attaches, then (in a wrapper first on PATH) the
  // answer waits a second before it is printed. A signal then used to stop the wrapper, and the
  // device it had attached was never named, so never detached.
  it('SIGTERM after losetup attached but before it named the device: let finish, then detached', { timeout: 30_000 }, async () => {
    const bin = join(work, 'bin');
    await mkdir(bin, { recursive: true });
    const real = spawnSync('sh', ['-c', 'command -v losetup'], { encoding: 'utf8' }).stdout.trim();
    const marker = join(work, 'attached');
    await writeFile(join(bin, 'losetup'), `#!/bin/sh\nif [ "$1" = --find ]; then\n  dev=$(${real} "$@") || exit $?\n  : > ${marker}\n  sleep 1\n  echo "$dev"\nelse\n  exec ${real} "$@"\nfi\n`);
    await chmod(join(bin, 'losetup'), 0o755);
    const r = await child(
      `void scratch.loop(file, 1 << 20, 4 << 20, true).catch(() => undefined);
` +
        `const { existsSync } = await import('node:fs');
` +
        `const poll = setInterval(() => { if (existsSync(${JSON.stringify(marker)})) { clearInterval(poll); process.kill(process.pid, 'SIGTERM'); } }, 5);
` +
        `setTimeout(() => {}, 60_000);`,
      file,
      { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}` },
    );
    expect(existsSync(marker)).toBe(true);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(143);
    expect(loopsOver(file)).toEqual([]);
  });

  it('release() also detaches a device over a written file that it never learnt of', { timeout: 30_000 }, async () => {
    const r = await child(
      `await scratch.loop(file, 1 << 20, 1 << 20, true);\n` +
        `spawnSync('losetup', ['--find', '--show', '--offset', String(2 << 20), '--sizelimit', String(1 << 20), file]);\n` +
        `if (spawnSync('losetup', ['--list', '--noheadings', '--output', 'NAME', '--associated', file], { encoding: 'utf8' }).stdout.trim().split('\\n').length !== 2) process.exit(3);\n` +
        `process.kill(process.pid, 'SIGTERM');\nsetTimeout(() => {}, 60_000);`,
      file,
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(143);
    expect(loopsOver(file)).toEqual([]);
  });
});
