import { describe, it, expect, beforeAll, beforeEach, afterEach } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile, readFile, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeStubDaemon, stubEvents } from '../simulator/stub-daemon.js';
import { waitFor, waitForSim, ensureBuilt } from '../simulator/helpers.js';

const bin = fileURLToPath(new URL('../../bin/piota.js', import.meta.url));
const run = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });

let dir: string;
let simDir: string;
let hubDir: string;
let pub: string;
let stubLog: string;
let stubEnv: Record<string, string>;
let child: ChildProcess | undefined;
let output: { stdout: string; stderr: string };

beforeAll(ensureBuilt);

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'piota-simcli-'));
  simDir = join(dir, 'pi');
  hubDir = join(dir, 'hub');
  await mkdir(hubDir);
  // A hub directory as `piota hub start` leaves it; registering works whether the hub runs or not.
  await writeFile(join(hubDir, 'hub.json'), JSON.stringify({ serviceConnectionString: 'x', caFile: 'ca.pem', host: 'localhost', mqttPort: 1, httpsPort: 2 }));
  pub = join(dir, 'vendor.pub');
  await writeFile(pub, 'key');
  stubLog = join(dir, 'stub.log');
  stubEnv = { PIOTA_SIM_DAEMON: JSON.stringify([process.execPath, await writeStubDaemon(dir)]), STUB_LOG: stubLog };
});

afterEach(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await new Promise((r) => child!.once('exit', r));
  }
  child = undefined;
  await rm(dir, { recursive: true, force: true });
});

function simulate(args: string[], env: Record<string, string> = {}): Promise<number | null> {
  output = { stdout: '', stderr: '' };
  child = spawn(process.execPath, [bin, 'simulate', '--dir', simDir, '--hub-dir', hubDir, '--device', 'pi1', '--pubkey', pub, ...args], {
    env: { ...process.env, ...stubEnv, ...env },
  });
  child.stdout!.on('data', (d) => (output.stdout += d));
  child.stderr!.on('data', (d) => (output.stderr += d));
  const c = child;
  return new Promise((r) => c.once('exit', (code) => r(code)));
}

describe('piota simulate', () => {
  it('rejects bad arguments with one line', () => {
    for (const [args, message] of [
      [['simulate', '--hub-dir', 'h', '--device', 'd', '--pubkey', 'p'], '--dir is required'],
      [['simulate', '--dir', 'x', '--hub-dir', 'h', '--device', 'd', '--pubkey', 'p', '--slot-size', '12Q'], "--slot-size: '12Q' is not a size"],
      [['simulate', '--dir', 'x', '--hub-dir', 'h', '--device', 'a b', '--pubkey', 'p'], "--device 'a b' is not a valid device id"],
      [['simulate', 'reboot'], '--dir is required'],
    ] as const) {
      const r = run(...args);
      expect(r.status).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toContain(message);
    }
  });

  it('names a missing public key and a missing hub directory', async () => {
    let r = run('simulate', '--dir', simDir, '--hub-dir', hubDir, '--device', 'pi1', '--pubkey', join(dir, 'nope.pub'));
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe(`piota: --pubkey ${join(dir, 'nope.pub')}: no such file`);
    r = run('simulate', '--dir', simDir, '--hub-dir', join(dir, 'nohub'), '--device', 'pi1', '--pubkey', pub);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${join(dir, 'nohub', 'hub.json')}: cannot read the hub's description`);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('sets up the Pi, writes the daemon config, runs the daemon and stops cleanly on SIGTERM', async () => {
    await writeFile(join(dir, 'frag.json'), JSON.stringify({ trialTimeoutSeconds: 20, boot: { trybootCommand: ['custom'] }, logLevel: 'debug' }));
    const exited = simulate(['--slot-size', '1M', '--version', '2.0.0', '--model', 'cm4', '--daemon-config', join(dir, 'frag.json')]);
    const simJson = join(simDir, 'sim.json');
    const s = await waitForSim(simJson, 'the first boot', (x) => x.bootCount === 1 && x.daemonPid !== null);
    expect(s).toMatchObject({ bootedSlot: 'A', trial: false, partitions: { A: 2, B: 3 } });
    const config = JSON.parse(await readFile(join(simDir, 'config.json'), 'utf8'));
    expect(config).toEqual({
      model: 'cm4',
      stateDir: join(simDir, 'data'),
      runtimeDir: join(simDir, 'run'),
      initialVersion: '2.0.0',
      versionFile: null,
      trustedKeys: [pub],
      allowPlainImages: false,
      hubCaFile: resolve(hubDir, 'ca.pem'),
      downloadCaFile: null,
      slots: s.slots,
      boot: {
        backend: 'tryboot',
        autobootFile: s.autoboot,
        bootPartitions: { A: 2, B: 3 },
        deviceTreeDir: join(simDir, 'device-tree', 'chosen', 'bootloader'),
        rebootCommand: [process.execPath, bin, 'simulate', 'reboot', '--dir', simDir],
        trybootCommand: ['custom'],
      },
      trialTimeoutSeconds: 20,
      progressIntervalSeconds: 5,
      maintenanceWindow: null,
      logLevel: 'debug',
    });
    for (const slot of ['A', 'B'] as const) {
      expect((await stat(s.slots[slot].boot)).size).toBe(1 << 20);
      expect((await stat(s.slots[slot].rootfs)).size).toBe(1 << 20);
    }
    const cs = join(simDir, 'data', 'connection-string');
    expect((await stat(cs)).mode & 0o777).toBe(0o600);
    expect(await readFile(cs, 'utf8')).toMatch(/^HostName=localhost:1;DeviceId=pi1;SharedAccessKey=[^;]+\n$/);
    await waitFor('the daemon to start', async () => (await stubEvents(stubLog)).length === 1);
    expect((await stubEvents(stubLog))[0]).toMatchObject({ event: 'start', pid: s.daemonPid, partition: 2, tryboot: 0 });
    expect(output.stdout).toContain('boot 1: slot A (partition 2)');

    child!.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(output.stdout).toContain('piota simulate: stopped');
    expect(JSON.parse(await readFile(simJson, 'utf8'))).toMatchObject({ daemonPid: null });
    expect((await stubEvents(stubLog)).map((e) => e.event)).toEqual(['start', 'sigterm']);
  });

  it('follows a --daemon-config that moves the boot partitions', async () => {
    await writeFile(join(dir, 'frag.json'), JSON.stringify({ boot: { bootPartitions: { A: 5, B: 6 } } }));
    const exited = simulate(['--slot-size', '1M', '--daemon-config', join(dir, 'frag.json')]);
    const s = await waitForSim(join(simDir, 'sim.json'), 'the first boot', (x) => x.bootCount === 1 && x.daemonPid !== null);
    expect(s).toMatchObject({ bootedSlot: 'A', partitions: { A: 5, B: 6 } });
    expect(await readFile(s.autoboot, 'utf8')).toContain('[all]\ntryboot_a_b=1\nboot_partition=5\n');
    await waitFor('the daemon to start', async () => (await stubEvents(stubLog)).length === 1);
    expect((await stubEvents(stubLog))[0]).toMatchObject({ partition: 5, tryboot: 0 });
    child!.kill('SIGTERM');
    expect(await exited).toBe(0);
  });

  it('--fail-trial: the daemon asks for a trial, the trial hangs, the watchdog boots the committed slot', async () => {
    await mkdir(join(simDir, 'bootconfig'), { recursive: true });
    await writeFile(join(simDir, 'bootconfig', 'autoboot.txt'), '[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n');
    const exited = simulate(['--slot-size', '1M', '--fail-trial'], { STUB_MODE: 'tryboot-once' });
    const simJson = join(simDir, 'sim.json');
    expect(await waitForSim(simJson, 'the hung trial', (x) => x.bootCount === 2)).toMatchObject({ bootedSlot: 'B', trial: true, daemonPid: null });
    expect(await waitForSim(simJson, 'the watchdog reset', (x) => x.bootCount === 3 && x.daemonPid !== null)).toMatchObject({
      bootedSlot: 'A',
      trial: false,
    });
    expect(output.stdout).toContain('watchdog reset');
    child!.kill('SIGINT');
    expect(await exited).toBe(0);
  });

  it('powers the same Pi on again after the simulator itself was SIGKILLed, without a second daemon', async () => {
    const simJson = join(simDir, 'sim.json');
    const first = simulate(['--slot-size', '1M']);
    const s1 = await waitForSim(simJson, 'the first boot', (x) => x.bootCount === 1 && x.daemonPid !== null);
    await waitFor('the daemon to start', async () => (await stubEvents(stubLog)).length === 1);
    child!.kill('SIGKILL');
    await first;
    expect(() => process.kill(s1.daemonPid!, 0)).not.toThrow(); // orphaned, still running
    await writeFile(s1.slots.B.rootfs, Buffer.alloc(1 << 20, 7)); // the "SD card" must survive
    const cs = join(simDir, 'data', 'connection-string');
    const connectionString = await readFile(cs, 'utf8');
    const second = simulate(['--slot-size', '2M']);
    const s2 = await waitForSim(simJson, 'the second power-on', (x) => x.daemonPid !== null && x.daemonPid !== s1.daemonPid);
    await waitFor('the orphan to go', async () => {
      try {
        process.kill(s1.daemonPid!, 0);
        return false;
      } catch {
        return true;
      }
    });
    expect(s2.bootedSlot).toBe('A');
    expect((await readFile(s1.slots.B.rootfs))[0]).toBe(7);
    expect((await stat(s1.slots.B.rootfs)).size).toBe(1 << 20); // an existing slot keeps its size
    expect(await readFile(cs, 'utf8')).toBe(connectionString); // the same device, the same key
    child!.kill('SIGTERM');
    expect(await second).toBe(0);
  });

  it('exits 1 with one clear line when the daemon keeps crashing', async () => {
    const code = await simulate(['--slot-size', '1M'], { STUB_MODE: 'crash' });
    expect(code).toBe(1);
    expect(output.stderr.trim().split('\n')).toHaveLength(1);
    expect(output.stderr).toMatch(/^piota: the daemon crashed 5 times within 60 s \(last: it exited with code 3\); see .*daemon\.log/);
  });
});

describe('piota simulate with a running hub emulator', () => {
  it('registers the device with the hub and stores its connection string 0600', async () => {
    const hub2 = join(dir, 'hub2');
    const hubProcess = spawn(process.execPath, [bin, 'hub', 'start', '--dir', hub2, '--host', '127.0.0.1', '--mqtt-port', '0', '--https-port', '0', '--quiet'], {
      stdio: 'ignore',
    });
    try {
      await waitFor('the hub to write hub.json', async () => existsSync(join(hub2, 'hub.json')), 30_000);
      const info = JSON.parse(await readFile(join(hub2, 'hub.json'), 'utf8')) as { mqttPort: number; caFile: string };
      hubDir = hub2;
      const exited = simulate(['--slot-size', '1M']);
      await waitForSim(join(simDir, 'sim.json'), 'the first boot', (x) => x.bootCount === 1 && x.daemonPid !== null);
      const cs = join(simDir, 'data', 'connection-string');
      expect((await stat(cs)).mode & 0o777).toBe(0o600);
      expect(await readFile(cs, 'utf8')).toMatch(new RegExp(`^HostName=127\\.0\\.0\\.1:${info.mqttPort};DeviceId=pi1;SharedAccessKey=`));
      const config = JSON.parse(await readFile(join(simDir, 'config.json'), 'utf8')) as { hubCaFile: string };
      expect(config.hubCaFile).toBe(resolve(hub2, info.caFile));
      child!.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      hubProcess.kill('SIGTERM');
      await new Promise((r) => (hubProcess.exitCode !== null ? r(null) : hubProcess.once('exit', r)));
    }
  });
});
