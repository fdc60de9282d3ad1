import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Runs `f` with a new temporary directory, removed afterwards whatever happens. */
export async function withTempDir(prefix: string, f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  try {
    await f(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
