import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { systemShuttingDown } from '../../src/os/system-shutdown.js';

// How each kind of answer of `systemctl is-system-running` is read. The real systemd's answers
// during a reboot are checked in test/systemd/system-shutdown.test.ts; here a script first on PATH
// gives each kind of answer on demand.
let bin: string;
const path = process.env.PATH;

beforeAll(async () => {
  bin = await mkdtemp(join(tmpdir(), 'piota-systemctl-'));
});
afterEach(() => {
  process.env.PATH = path;
});
afterAll(async () => {
  await rm(bin, { recursive: true, force: true });
});

async function systemctlThat(script: string): Promise<void> {
  await writeFile(join(bin, 'systemctl'), `#!/bin/sh\n${script}\n`);
  await chmod(join(bin, 'systemctl'), 0o755);
  process.env.PATH = `${bin}:${path}`;
}

describe('systemShuttingDown', () => {
  it.each([
    ['stopping (exit 1)', 'echo stopping; exit 1', true],
    ['running (exit 0)', 'echo running', false],
    ['degraded (exit 1)', 'echo degraded; exit 1', false],
    ['starting (exit 1)', 'echo starting; exit 1', false],
    ['offline: no systemd (exit 1)', 'echo offline; exit 1', false],
    ['killed by a signal from elsewhere (the stop of the service)', 'kill -TERM $$', true],
  ])('%s → %s', async (_what, script, expected) => {
    await systemctlThat(script);
    expect(await systemShuttingDown()).toBe(expected);
  });

  it('no answer within the timeout is no (it is killed by us, not by a stop)', async () => {
    await systemctlThat('exec sleep 5');
    const started = Date.now();
    expect(await systemShuttingDown(200)).toBe(false);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('no systemctl at all is no', async () => {
    process.env.PATH = bin + '-missing';
    expect(await systemShuttingDown()).toBe(false);
  });
});
