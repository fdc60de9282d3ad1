import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair } from '../../src/bundle/keys.js';

// `piota daemon` as systemd runs it: SIGTERM in the middle of the idle build of the slot index ends
// the process within 2 s (exit 0) and leaves no index and no temp file behind.
const bin = new URL('../../bin/piota.js', import.meta.url).pathname;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'piota-daemon-index-'));
  await writeFile(join(dir, 'key.pub'), generateKeyPair().publicKeyPem);
  const dt = join(dir, 'dt');
  await mkdir(dt);
  await writeFile(join(dt, 'partition'), Buffer.from([0, 0, 0, 2]));
  await writeFile(join(dt, 'tryboot'), Buffer.from([0, 0, 0, 0]));
  await writeFile(join(dir, 'autoboot.txt'), '[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=2\n');
  await writeFile(join(dir, 'a'), randomBytes(4 * 1024 * 1024));
  await writeFile(join(dir, 'b'), Buffer.alloc(4096));
  await mkdir(join(dir, 'state'));
  await writeFile(join(dir, 'state', 'connection-string'), 'HostName=localhost:1;DeviceId=d1;SharedAccessKey=' + Buffer.alloc(32).toString('base64'), { mode: 0o600 });
  await writeFile(join(dir, 'config.json'), JSON.stringify({
    model: 'raspberrypi4-64',
    stateDir: join(dir, 'state'),
    runtimeDir: join(dir, 'run'),
    trustedKeys: [join(dir, 'key.pub')],
    slots: { A: { rootfs: join(dir, 'a') }, B: { rootfs: join(dir, 'b') } },
    boot: { backend: 'tryboot', autobootFile: join(dir, 'autoboot.txt'), bootPartitions: { A: 2, B: 3 }, deviceTreeDir: dt, rebootCommand: ['true'], trybootCommand: ['true'] },
    // 4 MiB at 64 KiB/s: a minute, so SIGTERM comes in the middle.
    slotIndex: { bytesPerSecond: 65_536 },
  }));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('piota daemon and the idle slot index build', () => {
  it('SIGTERM during the build: exit 0 within 2 s, nothing half-written', async () => {
    const child = spawn(process.execPath, [bin, 'daemon', '--config', join(dir, 'config.json')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    child.stdout.on('data', (d: Buffer) => (log += d.toString()));
    child.stderr.on('data', (d: Buffer) => (log += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    await new Promise<void>((resolve, reject) => {
      const t = setInterval(() => {
        if (log.includes('building the slot index in idle time')) resolve();
        else if (child.exitCode !== null) reject(new Error(`daemon exited: ${log}`));
        else return;
        clearInterval(t);
      }, 20);
    });
    await new Promise((r) => setTimeout(r, 300)); // in the middle of reading, not before it
    const sent = performance.now();
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(performance.now() - sent).toBeLessThan(2000);
    expect(log).toContain('slot index build stopped');
    expect(log).not.toContain('slot index built');
    expect(await readdir(join(dir, 'state', 'slot-index')).catch(() => [])).toEqual([]);
  });
});
