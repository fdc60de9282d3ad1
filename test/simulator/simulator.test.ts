import { describe, it, expect, beforeEach, afterEach, beforeAll } from 'vitest';
import { mkdtemp, rm, readFile, readdir, writeFile, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { simLayout, createLayout, type SimLayout } from '../../src/simulator/layout.js';
import { startSimulator, type Simulator, type SimulatorOptions } from '../../src/simulator/simulator.js';
import { simulatedDaemonConfig, writeDaemonConfig, firmwareConfigOf, piotaBin } from '../../src/simulator/daemon-config.js';
import { TrybootBackend, readAutoboot } from '../../src/boot/index.js';
import { writeStubDaemon, stubEvents } from './stub-daemon.js';
import { waitFor, waitForSim, readSimJson, ensureBuilt } from './helpers.js';

let dir: string;
let layout: SimLayout;
let stub: string;
let stubLog: string;
let sim: Simulator | undefined;
let boot: TrybootBackend;

beforeAll(ensureBuilt);

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'piota-sim-'));
  layout = simLayout(join(dir, 'pi'));
  await createLayout(layout, 1 << 20);
  const hubDir = join(dir, 'hub');
  await import('node:fs/promises').then((fs) => fs.mkdir(hubDir));
  await writeFile(join(hubDir, 'hub.json'), JSON.stringify({ caFile: 'ca.pem' }));
  await writeFile(join(dir, 'vendor.pub'), 'not read by the stub');
  const config = await simulatedDaemonConfig({ layout, hubDir, deviceId: 'pi1', pubkey: join(dir, 'vendor.pub'), version: '1.0.0', model: 'raspberrypi4-64' });
  await writeDaemonConfig(layout.configFile, config);
  stub = await writeStubDaemon(dir);
  stubLog = join(dir, 'stub.log');
  boot = new TrybootBackend(config.boot as never);
});

afterEach(async () => {
  await sim?.stop();
  sim = undefined;
  await rm(dir, { recursive: true, force: true });
});

async function start(extra: Partial<SimulatorOptions> = {}, env: Record<string, string> = {}): Promise<Simulator> {
  const config = JSON.parse(await readFile(layout.configFile, 'utf8')) as Record<string, unknown>;
  sim = await startSimulator({
    dir: layout.dir,
    firmware: firmwareConfigOf(config, layout.configFile),
    simJson: layout.simJson,
    socket: layout.socket,
    daemonLog: layout.daemonLog,
    daemonCommand: [process.execPath, stub, '--config', layout.configFile],
    env: { ...process.env, STUB_LOG: stubLog, ...env },
    watchdogMs: 500,
    stopGraceMs: 2000,
    ...extra,
  });
  return sim;
}

/** The real reboot command, exactly as the daemon config names it (async: the simulator runs in this process). */
function rebootCommand(tryboot: boolean): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const args = [piotaBin, 'simulate', 'reboot', '--dir', layout.dir, ...(tryboot ? ['--tryboot'] : [])];
    const child = execFile(process.execPath, args, { encoding: 'utf8' }, (_err, _stdout, stderr) => resolve({ status: child.exitCode, stderr }));
  });
}

const running = (bootCount: number) => (s: { bootCount: number; daemonPid: number | null }) => s.bootCount === bootCount && s.daemonPid !== null;
const starts = async () => (await stubEvents(stubLog)).filter((e) => e.event === 'start');
const deviceTree = async (name: string) => (await readFile(join(layout.deviceTreeDir, name))).readUInt32BE(0);

describe('the simulated Pi firmware', () => {
  it('boots the committed slot and publishes sim.json with exactly the documented fields', async () => {
    await start();
    const s = await waitForSim(layout.simJson, 'the first boot', running(1));
    expect(Object.keys(s).sort()).toEqual(['autoboot', 'bootCount', 'bootedSlot', 'daemonPid', 'partitions', 'slots', 'trial']);
    expect(s).toEqual({
      daemonPid: s.daemonPid,
      bootedSlot: 'A',
      trial: false,
      bootCount: 1,
      partitions: { A: 2, B: 3 },
      slots: layout.slots,
      autoboot: layout.autoboot,
    });
    const [first] = await waitFor('the stub to start', async () => ((await starts()).length === 1 ? starts() : undefined));
    expect(first).toMatchObject({ pid: s.daemonPid, partition: 2, tryboot: 0 });
    expect(sim!.state()).toEqual(s);
    for (const p of [layout.slots.A.boot, layout.slots.B.rootfs]) expect((await stat(p)).size).toBe(1 << 20);
  });

  it('a tryboot reboot boots [tryboot] once; the next plain reboot falls back to [all]', async () => {
    await start();
    const s1 = await waitForSim(layout.simJson, 'the first boot', running(1));
    await boot.prepareTrial('B');
    expect(await rebootCommand(true)).toEqual({ status: 0, stderr: '' });
    const s2 = await waitForSim(layout.simJson, 'the trial boot', running(2));
    expect(s2).toMatchObject({ bootedSlot: 'B', trial: true });
    expect(s2.daemonPid).not.toBe(s1.daemonPid);
    expect([await deviceTree('partition'), await deviceTree('tryboot')]).toEqual([3, 1]);
    expect(await boot.bootedSlot()).toBe('B');
    expect(await boot.isTrialBoot()).toBe(true);
    const events = await stubEvents(stubLog);
    expect(events.find((e) => e.event === 'sigterm')?.pid).toBe(s1.daemonPid); // stopped, not killed
    // The runtime directory is emptied by the reboot: the trial daemon found no lock file.
    await waitFor('the trial start record', async () => (await starts()).length === 2);
    expect((await starts())[1]).toMatchObject({ pid: s2.daemonPid, partition: 3, tryboot: 1, runtimeBefore: [] });

    expect((await rebootCommand(false)).status).toBe(0); // not committed: back to A
    const s3 = await waitForSim(layout.simJson, 'the fallback boot', running(3));
    expect(s3).toMatchObject({ bootedSlot: 'A', trial: false });
    expect([await deviceTree('partition'), await deviceTree('tryboot')]).toEqual([2, 0]);
  });

  it('a committed trial slot boots on every later boot', async () => {
    await start();
    await waitForSim(layout.simJson, 'the first boot', running(1));
    await boot.prepareTrial('B');
    expect((await rebootCommand(true)).status).toBe(0);
    await waitForSim(layout.simJson, 'the trial boot', running(2));
    await boot.commit('B');
    expect((await rebootCommand(false)).status).toBe(0);
    expect(await waitForSim(layout.simJson, 'the boot after commit', running(3))).toMatchObject({ bootedSlot: 'B', trial: false });
  });

  it('a power cut (SIGKILL of the daemon) during a trial boots [all] again', async () => {
    await start();
    await waitForSim(layout.simJson, 'the first boot', running(1));
    await boot.prepareTrial('B');
    expect((await rebootCommand(true)).status).toBe(0);
    const trial = await waitForSim(layout.simJson, 'the trial boot', running(2));
    expect(trial).toMatchObject({ bootedSlot: 'B', trial: true });
    process.kill(trial.daemonPid!, 'SIGKILL');
    const after = await waitForSim(layout.simJson, 'the boot after the power cut', running(3));
    expect(after).toMatchObject({ bootedSlot: 'A', trial: false });
    expect(after.daemonPid).not.toBe(trial.daemonPid);
    // A power cut outside a trial boots the same committed slot again and counts as a boot.
    process.kill(after.daemonPid!, 'SIGKILL');
    expect(await waitForSim(layout.simJson, 'the second power cut', running(4))).toMatchObject({ bootedSlot: 'A', trial: false });
  });

  it('--fail-trial: the trial boot hangs with no daemon, the watchdog resets the board into the committed slot, once', async () => {
    await start({ failTrial: true, watchdogMs: 2500 });
    await waitForSim(layout.simJson, 'the first boot', running(1));
    await boot.prepareTrial('B');
    expect((await rebootCommand(true)).status).toBe(0);
    const hung = await waitForSim(layout.simJson, 'the hung trial boot', (s) => s.bootCount === 2);
    expect(hung).toMatchObject({ bootedSlot: 'B', trial: true, daemonPid: null });
    const reset = await waitForSim(layout.simJson, 'the watchdog reset', running(3));
    expect(reset).toMatchObject({ bootedSlot: 'A', trial: false });
    await waitFor('the stub after the reset', async () => (await starts()).length === 2);
    expect((await starts()).map((e) => e.partition)).toEqual([2, 2]); // nothing ran on B
    expect(await readAutoboot(layout.autoboot)).toEqual({ bootPartition: 2, trybootPartition: 3 });
    // One-shot: the next trial boots.
    expect((await rebootCommand(true)).status).toBe(0);
    expect(await waitForSim(layout.simJson, 'the second trial', running(4))).toMatchObject({ bootedSlot: 'B', trial: true });
  });

  it('a crash restarts the daemon without a reboot', async () => {
    await start();
    const s1 = await waitForSim(layout.simJson, 'the first boot', running(1));
    await waitFor('the stub to start', async () => (await starts()).length === 1);
    process.kill(s1.daemonPid!, 'SIGUSR2'); // the stub exits 3
    const s2 = await waitForSim(layout.simJson, 'the restart', (s) => s.daemonPid !== null && s.daemonPid !== s1.daemonPid);
    expect(s2).toMatchObject({ bootCount: 1, bootedSlot: 'A', trial: false });
    await waitFor('the restarted stub', async () => (await starts()).length === 2);
    // No reboot: the runtime directory still holds the first daemon's file.
    expect((await starts())[1].runtimeBefore).toEqual([`lock-${s1.daemonPid}`]);
  });

  it('gives up with a clear message when the daemon keeps crashing', async () => {
    const t0 = Date.now();
    const s = await start({ crashLimit: 3 }, { STUB_MODE: 'crash' });
    const exit = await s.done;
    expect(exit.code).toBe(1);
    expect(exit.message).toMatch(/^the daemon crashed 3 times within 60 s \(last: it exited with code 3\); see .*daemon\.log$/);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(await readSimJson(layout.simJson)).toMatchObject({ daemonPid: null, bootCount: 1 });
    expect(existsSync(layout.socket)).toBe(false);
    sim = undefined;
  });

  it('a power cut while the system shuts down for a tryboot boots [all]: the reboot argument never reached the firmware', async () => {
    await start({ stopGraceMs: 60_000 }, { STUB_IGNORE_TERM: '1' });
    const first = await waitForSim(layout.simJson, 'the first boot', running(1));
    await boot.prepareTrial('B');
    expect((await rebootCommand(true)).status).toBe(0);
    // The shutdown has begun (the daemon got its SIGTERM, and ignores it): now the power goes.
    for (let i = 0; i < 200 && !(await stubEvents(stubLog)).some((e) => e.event === 'sigterm'); i++) await new Promise((r) => setTimeout(r, 25));
    process.kill(first.daemonPid!, 'SIGKILL');
    const after = await waitForSim(layout.simJson, 'the boot after the cut', running(2));
    expect(after).toMatchObject({ bootedSlot: 'A', trial: false });
    expect(await deviceTree('tryboot')).toBe(0);
  });

  it('SIGKILLs a daemon that ignores SIGTERM at reboot, and that is not a power cut', async () => {
    await start({ stopGraceMs: 300 }, { STUB_IGNORE_TERM: '1' });
    await waitForSim(layout.simJson, 'the first boot', running(1));
    expect((await rebootCommand(false)).status).toBe(0);
    await waitForSim(layout.simJson, 'the reboot', running(2));
    await new Promise((r) => setTimeout(r, 300));
    expect((await readSimJson(layout.simJson))?.bootCount).toBe(2); // not booted twice
  });

  it('merges reboot requests that arrive while a reboot is under way', async () => {
    // A daemon that ignores SIGTERM keeps the first reboot busy until the test kills it.
    await start({ stopGraceMs: 60_000 }, { STUB_IGNORE_TERM: '1' });
    const s1 = await waitForSim(layout.simJson, 'the first boot', running(1));
    expect((await rebootCommand(false)).status).toBe(0);
    const late = await Promise.all([rebootCommand(true), rebootCommand(false)]);
    expect(late.map((a) => a.status)).toEqual([0, 0]);
    process.kill(s1.daemonPid!, 'SIGKILL'); // ends the first reboot's wait; not a power cut
    const s2 = await waitForSim(layout.simJson, 'the reboot', running(2));
    expect(s2).toMatchObject({ trial: false });
    await new Promise((r) => setTimeout(r, 400));
    expect((await readSimJson(layout.simJson))?.bootCount).toBe(2);
    const stopping = sim!.stop();
    process.kill(s2.daemonPid!, 'SIGKILL'); // this one ignores SIGTERM too
    expect(await stopping).toEqual({ code: 0 });
    sim = undefined;
  });

  it("the daemon can run the config's tryboot command itself, with no PATH", async () => {
    await boot.prepareTrial('B');
    await start({}, { STUB_MODE: 'tryboot-once' });
    const trial = await waitForSim(layout.simJson, 'the trial boot', running(2));
    expect(trial).toMatchObject({ bootedSlot: 'B', trial: true });
    const events = await stubEvents(stubLog);
    expect(events.find((e) => e.event === 'tryboot-command')).toMatchObject({ ok: true, stderr: '' });
  });

  it('stops cleanly: daemon stopped, sim.json says off, socket gone', async () => {
    const s = await start();
    const s1 = await waitForSim(layout.simJson, 'the first boot', running(1));
    expect(await s.stop()).toEqual({ code: 0 });
    sim = undefined;
    expect(await readSimJson(layout.simJson)).toMatchObject({ daemonPid: null, bootCount: 1 });
    expect(() => process.kill(s1.daemonPid!, 0)).toThrow();
    expect(existsSync(layout.socket)).toBe(false);
    const r = await rebootCommand(false);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('no simulated Pi is running there');
    expect(await readdir(layout.dir)).toContain('daemon.log');
  });

  it('refuses a second simulator on the same board, leaving the first one working', async () => {
    await start();
    const s1 = await waitForSim(layout.simJson, 'the first boot', running(1));
    const first = sim;
    await expect(start()).rejects.toThrow('another simulated Pi is already running in this directory');
    sim = first;
    expect(() => process.kill(s1.daemonPid!, 0)).not.toThrow(); // its daemon was not taken for a leftover
    expect((await rebootCommand(false)).status).toBe(0);
    await waitForSim(layout.simJson, 'the reboot', running(2));
  });

  it('refuses to boot a board whose autoboot.txt is broken, naming the problem', async () => {
    await writeFile(layout.autoboot, '[all]\nboot_partition=2\n');
    const s = await start();
    const exit = await s.done;
    sim = undefined;
    expect(exit).toEqual({ code: 1, message: expect.stringContaining('the board cannot boot') });
    expect(exit.message).toContain('tryboot_a_b=1');
  });
});
