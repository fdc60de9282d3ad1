import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { validateConfig } from '../../src/agent/config.js';

// `slotIndex.bytesPerSecond` (docs/configuration.md), checked from the outside as install.sh checks
// a config: the built `piota config check`, its exit code and its message.
const bin = fileURLToPath(new URL('../../bin/piota.js', import.meta.url));
const example = fileURLToPath(new URL('../../config.example.json', import.meta.url));
let dir: string;
let base: Record<string, any>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'piota-slot-index-config-'));
  base = JSON.parse(await readFile(example, 'utf8'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

let n = 0;
async function check(slotIndex: unknown) {
  const file = join(dir, `config-${n++}.json`);
  await writeFile(file, JSON.stringify({ ...base, slotIndex }));
  const r = spawnSync(process.execPath, [bin, 'config', 'check', file], { encoding: 'utf8' });
  return { file, status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('slotIndex.bytesPerSecond', () => {
  it('defaults to 16 MiB/s', () => {
    expect(validateConfig({ ...base, slotIndex: undefined }).slotIndex).toEqual({ bytesPerSecond: 16 * 1024 * 1024 });
    expect(validateConfig({ ...base, slotIndex: {} }).slotIndex.bytesPerSecond).toBe(16 * 1024 * 1024);
  });

  it('0 (no idle build) and a pace from 64 KiB/s pass piota config check', async () => {
    for (const bytesPerSecond of [0, 65_536, 4 * 1024 * 1024]) {
      const r = await check({ bytesPerSecond });
      expect({ status: r.status, stdout: r.stdout, stderr: r.stderr }).toEqual({ status: 0, stdout: `ok: ${r.file}\n`, stderr: '' });
      expect(validateConfig({ ...base, slotIndex: { bytesPerSecond } }).slotIndex.bytesPerSecond).toBe(bytesPerSecond);
    }
  });

  it('anything else is refused, naming the field (exit 2)', async () => {
    for (const bytesPerSecond of [1000, -1, 1.5, '16M', null, 2 ** 40]) {
      const r = await check({ bytesPerSecond });
      expect(r.status).toBe(2);
      expect(r.stderr).toBe(`config ${r.file}: slotIndex.bytesPerSecond (0, or bytes per second): expected a whole number from 65536 to 17179869184, got ${JSON.stringify(bytesPerSecond)}\n`);
    }
    const unknown = await check({ pace: 1 });
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toBe(`config ${unknown.file}: slotIndex: unknown field 'pace' (expected bytesPerSecond)\n`);
  });
});
