import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { serviceRegistry } from '../../src/service/hub-connection.js';
import { World, piotaBin, waitFor } from '../e2e/world.js';

/** `piota simulate --count` as a user runs it (node bin/piota.js, after npm run build). */
const run = (...args: string[]) => spawnSync(process.execPath, [piotaBin, 'simulate', ...args], { encoding: 'utf8', timeout: 60_000, killSignal: 'SIGKILL' });

describe('piota simulate --count', () => {
  let world: World;
  beforeAll(async () => {
    world = await World.create();
  }, 60_000);
  afterAll(async () => {
    await world?.close();
  });

  it.each([
    [['--count', '0'], /--count must be a whole number from 1 to 10000, got '0'/],
    [['--count', '3', '--fail-trial-ratio', '1.5'], /--fail-trial-ratio must be a share from 0 to 1 or a percentage \(10%\), got '1.5'/],
    [['--count', '3', '--tag', 'no-equals'], /--tag 'no-equals' must be key=value/],
    [['--count', '3', '--device-prefix', 'x'], /--hub-dir is required/],
  ])('refuses %j with exit 2 and a line naming the problem', (args, message) => {
    const r = run(...args, ...(args.includes('--device-prefix') ? [] : ['--device-prefix', 'x', '--hub-dir', '/nonexistent', '--pubkey', '/nonexistent']));
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
  });

  it('ratios that add up to more than 1 are refused with exit 1, before anything is registered', async () => {
    const r = run('--count', '4', '--device-prefix', 'over', '--hub-dir', world.hubDir, '--pubkey', world.key.pubFile, '--dir', join(world.dir, 'over'),
      '--fail-trial-ratio', '60%', '--offline-ratio', '0.5');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/must add up to at most 1/);
    expect(world.hub.connectedDevices().filter((d) => d.startsWith('over-'))).toEqual([]);
  });

  it('runs the devices in one process, tagged; an offline device connects on SIGUSR2; SIGTERM stops it with exit 0', async () => {
    const dir = join(world.dir, 'cli-fleet');
    const child = spawn(process.execPath, [piotaBin, 'simulate', '--count', '4', '--device-prefix', 'cli', '--hub-dir', world.hubDir, '--pubkey', world.key.pubFile,
      '--dir', dir, '--tag', 'ring=cli', '--tag', 'piota.site=lab', '--offline-ratio', '25%', '--seed', '3', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await waitFor('the fleet to start', async () => out.includes('1 offline until SIGUSR2'), 60_000);
      const fleet = JSON.parse(await readFile(join(dir, 'fleet.json'), 'utf8')) as { pid: number; devices: { id: string; role: string }[] };
      expect(fleet.pid).toBe(child.pid);
      const offline = fleet.devices.filter((d) => d.role === 'offline').map((d) => d.id);
      expect(offline).toHaveLength(1);
      const online = ['cli-1', 'cli-2', 'cli-3', 'cli-4'].filter((id) => !offline.includes(id));
      await waitFor('three devices to connect', async () => online.every((id) => world.hub.connectedDevices().includes(id)), 60_000);
      expect(world.hub.connectedDevices()).not.toContain(offline[0]);
      const { responseBody } = await serviceRegistry(world.hub.info).getTwin('cli-2');
      expect(responseBody.tags).toMatchObject({ ring: 'cli', piota: { site: 'lab' } });
      child.kill('SIGUSR2');
      await waitFor('the offline device to connect', async () => world.hub.connectedDevices().includes(offline[0]), 60_000);
      child.kill('SIGTERM');
      const [code] = (await once(child, 'exit')) as [number | null];
      expect(code).toBe(0);
      expect(out).toContain('piota simulate: stopped');
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- piota simulate said:\n${out}`);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  }, 180_000);
});
