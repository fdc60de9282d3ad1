import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import type { SimState } from '../../src/simulator/simulator.js';
import { waitFor } from '../helpers/wait-for.js';

export { waitFor };

export async function readSimJson(path: string): Promise<SimState | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as SimState;
  } catch {
    return undefined;
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
