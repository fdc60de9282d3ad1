import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn } from 'node:child_process';
import { World, piotaBin } from './world.js';

// `piota trigger` as a user runs it, against simulated devices on the emulator.
let world: World;
beforeAll(async () => {
  world = await World.create();
}, 60_000);
afterAll(() => world?.close());

function trigger(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [piotaBin, 'trigger', '--hub-dir', world.hubDir, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('piota trigger', () => {
  it('follows an update to applyComplete (exit 0), with --json one object per line', async () => {
    await world.pi('t-ok');
    const { url } = await world.bundle('t-ok', { version: '1.0.1' });
    const r = await trigger('--device', 't-ok', '--uri', url, '--json', '--timeout', '60');
    expect(r.code).toBe(0);
    const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(events[0]).toMatchObject({ event: 'accepted' });
    const statuses = events.filter((e) => e.event === 'status').map((e) => e.status);
    expect(statuses[0]).toBe('waiting');
    expect(statuses.at(-1)).toBe('applyComplete');
    expect(events.at(-1)).toMatchObject({ event: 'result', result: 'applyComplete', exitCode: 0, firmwareVersion: '1.0.1', updateId: events[0].updateId });
  });

  it('prints plain lines without a terminal and exits 1 on a failed trial', async () => {
    await world.pi('t-fail', { failTrial: true });
    const { url } = await world.bundle('t-fail', { version: '1.0.1' });
    const r = await trigger('--device', 't-fail', '--uri', url, '--timeout', '60');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^\d\d:\d\d:\d\d {2}accepted/m);
    expect(r.stdout).toMatch(/applyFailed — trialFailed/);
    expect(r.stdout.trim().split('\n').at(-1)).toMatch(/^result: applyFailed/);
    expect(r.stdout).not.toContain('\r');
  });

  it('exits 3 with the device message on a refusal (400, 409)', async () => {
    await world.pi('t-refuse');
    const bad = await trigger('--device', 't-refuse', '--uri', 'http://insecure.example/fw');
    expect(bad.code).toBe(3);
    expect(bad.stdout).toContain('the device answered 400: fwPackageUri must be an https:// URL');

    world.files.faults.bytesPerSecond = 32 * 1024;
    try {
      const { url } = await world.bundle('t-slow', { version: '1.0.1', rootfsBytes: 512 * 1024 });
      const { url: other } = await world.bundle('t-other', { version: '1.0.2' });
      const first = await world.invoke('t-refuse', 'firmwareUpdate', { fwPackageUri: url });
      expect(first.status).toBe(200);
      const busy = await trigger('--device', 't-refuse', '--uri', other, '--json');
      expect(busy.code).toBe(3);
      const last = JSON.parse(busy.stdout.trim().split('\n').at(-1)!);
      expect(last).toMatchObject({ result: 'refused', status: 409, exitCode: 3, updateId: first.payload.updateId });
      // Nothing more is needed of the slow update: cancel it.
      await world.invoke('t-refuse', 'firmwareUpdateCancel', null);
    } finally {
      world.files.faults.bytesPerSecond = undefined;
    }
  });

  it('exits 5 for a device that is offline or unknown', async () => {
    const unknown = await trigger('--device', 'no-such-device', '--uri', 'https://localhost/fw');
    expect(unknown.code).toBe(5);
    expect(unknown.stdout).toContain('no-such-device');
    const { addDevice } = await import('../../src/hub-emulator/index.js');
    await addDevice(world.hubDir, 'registered-but-off');
    const offline = await trigger('--device', 'registered-but-off', '--uri', 'https://localhost/fw');
    expect(offline.code).toBe(5);
    expect(offline.stdout).toContain('not connected');
  });

  it('exits 4 when the update does not end within --timeout', async () => {
    await world.pi('t-slow');
    world.files.faults.bytesPerSecond = 16 * 1024;
    try {
      const { url } = await world.bundle('t-timeout', { version: '1.0.1', rootfsBytes: 512 * 1024 });
      const r = await trigger('--device', 't-slow', '--uri', url, '--timeout', '3');
      expect(r.code).toBe(4);
      expect(r.stdout).toMatch(/result: timeout — no result within 3 s \(last status: (waiting|downloading)\)/);
      await world.invoke('t-slow', 'firmwareUpdateCancel', null);
    } finally {
      world.files.faults.bytesPerSecond = undefined;
    }
  });

  it('exits 2 on usage and connection errors with one line on stderr', async () => {
    const missing = await trigger('--uri', 'https://x/fw');
    expect(missing.code).toBe(2);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    expect(missing.stderr).toContain('--device is required');
    const child = spawn(process.execPath, [piotaBin, 'trigger', '--device', 'd', '--uri', 'https://x/fw', '--hub-dir', '/nonexistent'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise((r) => child.on('exit', r));
    expect(code).toBe(2);
    expect(stderr).toContain('no hub.json in /nonexistent');
  });
});
