import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../../bin/piota.js', import.meta.url));
const example = JSON.parse(readFileSync(new URL('../../config.example.json', import.meta.url), 'utf8'));

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'piota-window-config-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** Starts `piota daemon --config` on the example config with this window; it must stop before doing anything. */
async function daemonWith(maintenanceWindow: unknown) {
  const file = join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(file, JSON.stringify({ ...example, stateDir: join(dir, 'state'), runtimeDir: join(dir, 'run'), maintenanceWindow }));
  return spawnSync(process.execPath, [bin, 'daemon', '--config', file], { encoding: 'utf8', timeout: 20_000 });
}

describe('piota daemon with a maintenance window it cannot use', () => {
  it.each([
    ['a cron expression with a bad field', { cron: '0 25 * * *', durationMinutes: 60 }, /maintenanceWindow\.cron: '0 25 \* \* \*' is not a valid cron expression \(hour/],
    ['something that is not cron', { cron: 'nightly', durationMinutes: 60 }, /maintenanceWindow\.cron: 'nightly'/],
    ['an unknown time zone', { cron: '0 2 * * *', durationMinutes: 60, timeZone: 'Europe/Atlantis' }, /maintenanceWindow\.timeZone: 'Europe\/Atlantis' is not a time zone/],
    ['a window that never comes', { cron: '0 0 29 2 1', durationMinutes: 60, timeZone: 'UTC' }, /maintenanceWindow\.cron: '0 0 29 2 1' never matches/],
    ['no duration', { cron: '0 2 * * *' }, /maintenanceWindow\.durationMinutes: expected a whole number/],
  ])('exits 2 with one line naming the field: %s', async (_what, window, message) => {
    const r = await daemonWith(window);
    expect(r.status).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(message);
    expect(lines[0]).toContain('config ');
  });
});
