import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { validateConfig } from '../../src/agent/config.js';

// `download.adaptive` (docs/configuration.md), checked as install.sh checks a config: the built
// `piota config check`, its exit code and message.
const bin = fileURLToPath(new URL('../../bin/piota.js', import.meta.url));
const example = fileURLToPath(new URL('../../config.example.json', import.meta.url));
let dir: string;
let base: Record<string, any>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'piota-adaptive-config-'));
  base = JSON.parse(await readFile(example, 'utf8'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function check(download: Record<string, unknown>) {
  const file = join(dir, `config-${JSON.stringify(download.adaptive)}.json`);
  await writeFile(file, JSON.stringify({ ...base, download: { ...base.download, ...download } }));
  const r = spawnSync(process.execPath, [bin, 'config', 'check', file], { encoding: 'utf8' });
  return { file, status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('download.adaptive', () => {
  it('is on unless the config says otherwise', () => {
    expect(validateConfig({ ...base, download: undefined }).download.adaptive).toBe(true);
    expect(validateConfig({ ...base, download: { adaptive: false } }).download.adaptive).toBe(false);
  });

  it('true and false pass piota config check', async () => {
    for (const adaptive of [true, false]) {
      const r = await check({ adaptive });
      expect({ status: r.status, stdout: r.stdout, stderr: r.stderr }).toEqual({ status: 0, stdout: `ok: ${r.file}\n`, stderr: '' });
    }
  });

  it('anything else is refused, naming the field (exit 2)', async () => {
    for (const adaptive of ['yes', 1, null]) {
      const r = await check({ adaptive });
      expect(r.status).toBe(2);
      expect(r.stderr).toBe(`config ${r.file}: download.adaptive: expected true or false\n`);
    }
  });
});
