import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import type { SimState } from '../../src/simulator/simulator.js';

export async function readSimJson(path: string): Promise<SimState | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as SimState;
  } catch {
    return undefined;
  }
}

/** Polls until `check` returns a value (not undefined/false), or fails naming what it waited for. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Waits until sim.json satisfies `pred` and returns it. */
export function waitForSim(path: string, what: string, pred: (s: SimState) => boolean, timeoutMs?: number): Promise<SimState> {
  return waitFor(what, async () => {
    const s = await readSimJson(path);
    return s && pred(s) ? s : undefined;
  }, timeoutMs);
}

/** Builds dist/ when a test file runs on its own (npm test builds first): the CLI runs from there. */
export function ensureBuilt(): void {
  if (existsSync(new URL('../../dist/cli/main.js', import.meta.url))) return;
  const r = spawnSync('npm', ['run', 'build'], { cwd: new URL('../..', import.meta.url), stdio: 'inherit' });
  if (r.status !== 0) throw new Error('npm run build failed');
}
