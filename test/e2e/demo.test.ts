import { describe, it, expect } from 'vitest';
import { spawn, execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { piotaBin } from './world.js';

const demoDirs = () => readdirSync(tmpdir()).filter((n) => n.startsWith('piota-demo-'));
const demoProcesses = () => {
  const ps = execFileSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' });
  return ps.split('\n').filter((l) => l.includes('piota-demo-') && !l.includes(' ps '));
};

describe('piota demo', () => {
  it('runs the whole loop to applyComplete and leaves nothing behind', async () => {
    const dirsBefore = new Set(demoDirs());
    const child = spawn(process.execPath, [piotaBin, 'demo'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const started = Date.now();
    const code = await new Promise((r) => child.on('exit', r));
    const seconds = (Date.now() - started) / 1000;
    expect(code, out).toBe(0);
    expect(seconds).toBeLessThan(60);
    // It says in plain words what happens at each step.
    for (const words of ['signature checked', 'trial boot of slot B', 'committing slot B', 'result: applyComplete', 'now runs 1.0.1 from slot B']) {
      expect(out).toContain(words);
    }
    expect(demoDirs().filter((d) => !dirsBefore.has(d))).toEqual([]);
    expect(demoProcesses()).toEqual([]);
  }, 90_000);

  it('stops cleanly on Ctrl-C', async () => {
    const dirsBefore = new Set(demoDirs());
    const child = spawn(process.execPath, [piotaBin, 'demo'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    await new Promise<void>((resolve) => {
      const t = setInterval(() => {
        if (out.includes('== 4.')) {
          clearInterval(t);
          resolve();
        }
      }, 50);
    });
    child.kill('SIGINT');
    const code = await new Promise((r) => child.on('exit', r));
    expect(code).not.toBe(0);
    expect(demoDirs().filter((d) => !dirsBefore.has(d))).toEqual([]);
    expect(demoProcesses()).toEqual([]);
  }, 90_000);
});
