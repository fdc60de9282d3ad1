import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair } from '../../src/bundle/keys.js';

const bin = new URL('../../bin/piota.js', import.meta.url).pathname;
let dir: string;
let config: Record<string, unknown>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'piota-daemon-cli-'));
  await writeFile(join(dir, 'key.pub'), generateKeyPair().publicKeyPem);
  const dt = join(dir, 'dt');
  await mkdir(dt);
  await writeFile(join(dt, 'partition'), Buffer.from([0, 0, 0, 2]));
  await writeFile(join(dt, 'tryboot'), Buffer.from([0, 0, 0, 0]));
  await writeFile(join(dir, 'autoboot.txt'), '[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=2\n');
  for (const f of ['a', 'b']) await writeFile(join(dir, f), Buffer.alloc(4096));
  config = {
    model: 'raspberrypi4-64',
    stateDir: join(dir, 'state'),
    runtimeDir: join(dir, 'run'),
    trustedKeys: [join(dir, 'key.pub')],
    slots: { A: { rootfs: join(dir, 'a') }, B: { rootfs: join(dir, 'b') } },
    boot: { backend: 'tryboot', autobootFile: join(dir, 'autoboot.txt'), bootPartitions: { A: 2, B: 3 }, deviceTreeDir: dt, rebootCommand: ['true'], trybootCommand: ['true'] },
  };
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function writeConfig(c: unknown): Promise<string> {
  const p = join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(p, JSON.stringify(c));
  return p;
}

describe('piota daemon', () => {
  it('names a wrong config field in one line and exits 2', async () => {
    const p = await writeConfig({ ...config, trialTimeoutSeconds: 'soon' });
    const r = spawnSync(process.execPath, [bin, 'daemon', '--config', p], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('trialTimeoutSeconds: expected a whole number');
  });

  it('takes the config from PIOTA_CONFIG and says where the missing connection string belongs', async () => {
    const p = await writeConfig(config);
    const r = spawnSync(process.execPath, [bin, 'daemon'], { encoding: 'utf8', env: { ...process.env, PIOTA_CONFIG: p } });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`no device connection string at ${join(dir, 'state', 'connection-string')}`);
  });

  it('starts without a reachable hub and keeps retrying, refuses a second daemon, and stops on SIGTERM', async () => {
    await mkdir(join(dir, 'state'), { recursive: true });
    // A hub that does not exist: the daemon must start anyway and keep retrying.
    await writeFile(join(dir, 'state', 'connection-string'), 'HostName=localhost:1;DeviceId=d1;SharedAccessKey=' + Buffer.alloc(32).toString('base64'), { mode: 0o600 });
    const p = await writeConfig(config);
    const first = spawn(process.execPath, [bin, 'daemon', '--config', p], { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    first.stdout.on('data', (d: Buffer) => (log += d.toString()));
    await new Promise<void>((resolve, reject) => {
      const t = setInterval(() => {
        if (log.includes('cannot reach the hub')) {
          clearInterval(t);
          resolve();
        }
        if (first.exitCode !== null) reject(new Error(`daemon exited: ${log}`));
      }, 50);
    });
    expect(log).not.toContain('SharedAccessKey=AAAA');
    const second = spawnSync(process.execPath, [bin, 'daemon', '--config', p], { encoding: 'utf8' });
    expect(second.status).toBe(1);
    expect(second.stderr).toContain('another piota daemon is running');
    first.kill('SIGTERM');
    const code = await new Promise((r) => first.on('exit', r));
    expect(code).toBe(0);
    // The state it reported at start is on disk and readable by status.
    const status = spawnSync(process.execPath, [bin, 'status', '--config', p, '--json'], { encoding: 'utf8' });
    expect(status.status).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ bootedSlot: 'A', committedSlot: 'A', runningVersion: '0.0.0', update: null });
  });

  /** Starts the daemon on `stateDir`, waits for `ready` in its log, SIGTERMs it; returns the log and the ms from SIGTERM to exit. */
  async function startThenStop(name: string, ready: string, extra: Record<string, unknown> = {}, prepare?: (stateDir: string) => Promise<void>) {
    const state = join(dir, `state-${name}`);
    await mkdir(state, { recursive: true });
    await writeFile(join(state, 'connection-string'), 'HostName=localhost:1;DeviceId=d1;SharedAccessKey=' + Buffer.alloc(32).toString('base64'), { mode: 0o600 });
    await prepare?.(state);
    const p = await writeConfig({ ...config, stateDir: state, runtimeDir: join(dir, `run-${name}`), ...extra });
    const child = spawn(process.execPath, [bin, 'daemon', '--config', p], { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    child.stdout.on('data', (d: Buffer) => (log += d.toString()));
    child.stderr.on('data', (d: Buffer) => (log += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    await new Promise<void>((resolve, reject) => {
      const t = setInterval(() => {
        if (log.includes(ready)) {
          clearInterval(t);
          resolve();
        }
        if (child.exitCode !== null) {
          clearInterval(t);
          reject(new Error(`daemon exited: ${log}`));
        }
      }, 20);
    });
    const sent = performance.now();
    child.kill('SIGTERM');
    const code = await exited;
    return { log, code, stopMs: performance.now() - sent, state };
  }

  it('starts on a damaged state file from a newer piota: moves it aside, starts idle, reports the recovery', async () => {
    const r = await startThenStop('newer', 'cannot reach the hub', {}, (state) => writeFile(join(state, 'state.json'), JSON.stringify({ schema: 99, data: {} })));
    expect(r.code).toBe(0);
    expect(r.log).toContain('the state file was damaged; recovered');
    const aside = (await readdir(r.state)).find((n) => n.startsWith('state.json.damaged-'));
    expect(aside).toBeDefined();
    expect(JSON.parse(await readFile(join(r.state, aside!), 'utf8')).schema).toBe(99);
    // It wrote a state of its own, in its own schema, with the recovery in it.
    const now = JSON.parse(await readFile(join(r.state, 'state.json'), 'utf8'));
    expect(now.schema).toBe(2);
    expect(now.data.recovery.restoredFrom).toBe('rebuilt');
  });

  it('stops within 2 s of SIGTERM with the hub unreachable', async () => {
    const r = await startThenStop('hub-down', 'cannot reach the hub');
    expect(r.code).toBe(0);
    expect(r.stopMs).toBeLessThan(2000);
  });

  it('stops within 2 s of SIGTERM while it waits for a plausible clock', async () => {
    const r = await startThenStop('clock', 'the clock is behind', { clock: { maxWaitSeconds: 3600, syncFlagFile: join(dir, 'no-such-sync-flag') } }, async (state) => {
      const ahead = Date.now() + 10 * 365 * 86_400_000; // a floor an older agent persisted from a clock set to the future
      await writeFile(join(state, 'state.json'), JSON.stringify({ schema: 2, data: { slots: { A: null, B: null }, update: null, newestTimestamp: ahead } }));
    });
    expect(r.code).toBe(0);
    expect(r.stopMs).toBeLessThan(2000);
  });
});
