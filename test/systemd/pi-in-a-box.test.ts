import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startTestFileServer, type TestFileServer } from '../helpers/https-file-server.js';
import { waitFor } from '../helpers/wait-for.js';
import { ensureBuilt } from '../simulator/helpers.js';
import { Box } from './box.js';
import { piImage, piImageSkipReason, type PiImage } from './pi-image.js';

// A converted image booted under a real systemd 257 by `piota simulate --image`: the shipped units
// and config, the real partitions (loop devices at /dev/mmcblk0pN), the firmware played around
// the container. One Pi goes through its life in order: first boot, a hung daemon, an update with
// a power cut in the middle of the download, a release that cannot start.
const bin = fileURLToPath(new URL('../../bin/piota.js', import.meta.url));
const skip = piImageSkipReason();
if (skip) console.warn(`Pi-in-a-box tests skipped: ${skip}`);

// Shortened as an operator would, with drop-ins (docs/simulator.md).
const WATCHDOG_DROPIN = '[Service]\nWatchdogSec=6s\nRestartSec=1s\n';
const GUARD_DROPIN = '[Timer]\nOnBootSec=\nOnBootSec=45s\n';

describe.skipIf(skip !== undefined)('a Pi in a box: a converted image under a real systemd', () => {
  let work: string;
  let fixture: PiImage;
  let hub: ChildProcess;
  let hubDir: string;
  let server: TestFileServer;
  let box: Box;
  let healthy: string;
  let broken: string;

  beforeAll(async () => {
    ensureBuilt();
    work = await mkdtemp(join(tmpdir(), 'piota-box-'));
    fixture = await piImage();
    healthy = await fixture.release('1.0.1');
    broken = await fixture.release('1.0.2', 'cannotStart');
    // The hub and the download server with the CA the image trusts, on 127.0.0.1: a stand-in
    // root has no /etc/hosts, so "localhost" does not resolve inside it.
    hubDir = join(work, 'hub');
    await cp(fixture.tlsDir, join(hubDir, 'tls'), { recursive: true });
    hub = spawn(process.execPath, [bin, 'hub', 'start', '--dir', hubDir, '--host', '127.0.0.1', '--mqtt-port', '0', '--https-port', '0', '--quiet'], { stdio: 'ignore' });
    await waitFor('hub.json', async () => existsSync(join(hubDir, 'hub.json')), 30_000);
    const serverTls = join(work, 'server-tls');
    await cp(fixture.tlsDir, join(serverTls, 'tls'), { recursive: true });
    server = await startTestFileServer({ host: '127.0.0.1', tlsDir: serverTls });
    server.add('fw-1.0.1.piota', healthy);
    server.add('fw-1.0.2.piota', broken);
    await writeFile(join(work, 'watchdog.conf'), WATCHDOG_DROPIN);
    await writeFile(join(work, 'guard.conf'), GUARD_DROPIN);
    box = new Box({
      image: fixture.image,
      dir: join(work, 'pi'),
      hubDir,
      device: 'box-pi',
      dropIns: { 'piota.service': join(work, 'watchdog.conf'), 'piota-trial-guard.timer': join(work, 'guard.conf') },
    });
  }, 900_000);

  afterAll(async () => {
    if (box) await box.powerOff();
    await server?.close();
    if (hub && hub.exitCode === null) {
      const gone = new Promise((resolve) => hub.once('exit', resolve));
      hub.kill('SIGTERM');
      const timer = setTimeout(() => hub.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(timer);
    }
    if (work) await rm(work, { recursive: true, force: true });
  }, 120_000);

  const trigger = (uri: string) =>
    new Promise<{ code: number | null; output: string }>((resolve) => {
      const child = spawn(process.execPath, [bin, 'trigger', '--hub-dir', hubDir, '--device', 'box-pi', '--uri', uri, '--timeout', '900', '--apply-now'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (c: Buffer) => (output += c.toString()));
      child.stderr.on('data', (c: Buffer) => (output += c.toString()));
      child.on('close', (code) => resolve({ code, output }));
    });

  it('first boot: the dropped connection string moves to the data partition (0600), the service comes up, no warnings', async () => {
    box.powerOn();
    await box.waitForLine(/dropped the connection string of 'box-pi' on the bootconfig partition/);
    await box.waitForLine(/boot 1: slot A \(partition 2; powerOn\)/);
    await box.waitForActive('piota.service');
    const cs = box.dataPath('piota', 'connection-string');
    expect((await readFile(cs, 'utf8')).trim()).toMatch(/^HostName=127\.0\.0\.1:\d+;DeviceId=box-pi;SharedAccessKey=/);
    expect((await stat(cs)).mode & 0o777).toBe(0o600);
    // Gone from the FAT partition, inside (the container's /boot/bootconfig) and on the partition itself.
    expect((await box.exec(['ls', '/boot/bootconfig'])).stdout.split('\n')).not.toContain('piota-connection-string.txt');
    expect((await box.exec(['systemctl', 'show', '-P', 'Result', 'piota-provision.service'])).stdout.trim()).toBe('success');
    // Ready means READY=1 reached systemd (Type=notify), and the daemon reached the hub.
    await waitFor('the daemon connected', async () => (await box.exec(['journalctl', '-u', 'piota', '-o', 'cat', '--no-pager'])).stdout.includes('"msg":"connected'), 60_000);
    const warnings = await box.exec(['journalctl', '-u', 'piota', '-p', 'warning', '-b', '-q', '--no-pager', '-o', 'cat']);
    expect(warnings.stdout).toBe('');
    const failed = await box.exec(['systemctl', '--failed', '--no-legend', '--plain']);
    expect(failed.stdout.trim()).toBe('');
  }, 300_000);

  it('an update: a power cut during the download resumes, the tryboot trial boots B, piota commits, and B stays', async () => {
    server.faults.bytesPerSecond = 8 * 1024 * 1024; // slow enough to cut the power in the middle
    const result = trigger(server.url('fw-1.0.1.piota'));
    let ended: string | undefined;
    void result.then((r) => (ended = `piota trigger ended early (exit ${r.code}): ${r.output}`));
    const statePath = box.dataPath('piota', 'state.json');
    const seen = await waitFor('the download under way', async () => {
      if (ended) return ended;
      const u = (JSON.parse(await readFile(statePath, 'utf8')) as { data: { update?: { phase: string; bytesDownloaded: number } } }).data.update;
      return u && u.phase === 'downloading' && u.bytesDownloaded > 32 * 1024 * 1024 ? u.bytesDownloaded : undefined;
    }, 300_000);
    if (typeof seen === 'string') throw new Error(seen);
    const progress = seen;
    server.faults.bytesPerSecond = undefined;
    const before = (await box.sim())!;
    process.kill(before.containerPid!, 'SIGKILL'); // the power cut
    await box.waitForLine(/power cut \(the container was killed\)/);
    await box.waitForLine(/boot 2: slot A \(partition 2; powerCut\)/);
    await box.waitForLine(/reboot \(argument "0 tryboot"\)/, 600_000);
    await box.waitForLine(/boot 3: slot B \(partition 3, trial; tryboot\)/);
    const r = await result;
    expect(r.code, r.output).toBe(0);
    expect(r.output).toMatch(/applyComplete/);
    // Resumed, not restarted: the daemon's own word after the cut, at a chunk it had persisted. (Its
    // requests alone do not tell: a format 2 bundle resumes adaptively when slot A's index is there,
    // with ranges of the unit store; docs/adaptive-updates.md.)
    const journal = (await box.exec(['journalctl', '--merge', '-u', 'piota', '-q', '--no-pager', '-o', 'cat'])).stdout;
    const resumed = journal.split('\n').filter((l) => l.includes('"resuming the download"')).map((l) => JSON.parse(l) as { chunk: number; offset: number });
    expect(resumed.length, journal.slice(-2000)).toBeGreaterThan(0);
    expect(resumed[0].chunk).toBeGreaterThan(0);
    expect(resumed[0].offset).toBeLessThanOrEqual(progress + 64 * 1024 * 1024);
    expect((await box.exec(['cat', '/etc/piota-release'])).stdout.trim()).toBe('1.0.1');
    expect((await readFile(join(box.dataPath('..', '..'), 'bootconfig', 'autoboot.txt'), 'utf8'))).toMatch(/boot_partition=3/);
    // Powered off and on again: the committed slot B boots, no trial.
    expect(await box.powerOff()).toBe(0);
    // The card itself, read with mtools like a laptop would: committed to B, the dropped string gone.
    const card = join(work, 'pi', 'pi.img');
    const p1 = JSON.parse(spawnSync('sfdisk', ['--json', card], { encoding: 'utf8' }).stdout).partitiontable.partitions[0] as { start: number };
    const fat = `${card}@@${p1.start * 512}`;
    const listing = spawnSync('mdir', ['-b', '-i', fat, '::/'], { encoding: 'utf8', env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } });
    expect(listing.stdout).toContain('autoboot.txt');
    expect(listing.stdout).not.toContain('piota-connection-string.txt');
    const autoboot = spawnSync('mtype', ['-i', fat, '::/autoboot.txt'], { encoding: 'utf8', env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } });
    expect(autoboot.stdout).toMatch(/\[all\][^[]*boot_partition=3/);
    box.lines.length = 0;
    box.powerOn();
    await box.waitForLine(/boot 1: slot B \(partition 3; powerOn\)/);
    await box.waitForActive('piota.service');
    const s = (await box.sim())!;
    expect({ bootedSlot: s.bootedSlot, trial: s.trial }).toEqual({ bootedSlot: 'B', trial: false });
  }, 900_000);

  it('a release whose piota cannot start is rolled back by the trial guard under systemd', async () => {
    const result = trigger(server.url('fw-1.0.2.piota'));
    await box.waitForLine(/boot 2: slot A \(partition 2, trial; tryboot\)/, 600_000);
    // Nothing of piota runs in this trial: the guard's timer (45 s here) reboots it into [all].
    await box.waitForLine(/boot 3: slot B \(partition 3; reboot\)/, 300_000);
    const r = await result;
    expect(r.code, r.output).toBe(1);
    expect(r.output).toMatch(/applyFailed/);
    expect((await box.exec(['cat', '/etc/piota-release'])).stdout.trim()).toBe('1.0.1');
    // The guard's own words, from the journal on the data partition. --merge: each slot's root has
    // its own machine id, so the trial of slot A wrote under another machine's directory than the
    // one slot B's journalctl reads by default (and `-b -1` would name B's own previous boot). The
    // message is unique to this trial (slot A on partition 2 never committed, back to partition 3).
    const guardSaid = /trial boot of partition 2 was never committed.*rebooting into partition 3/;
    await waitFor('the trial guard\'s reboot in the journal', async () => guardSaid.test((await box.exec(['journalctl', '--merge', '-u', 'piota-trial-guard', '-q', '--no-pager', '-o', 'cat'])).stdout), 60_000);
  }, 900_000);
  it('a SIGSTOPped daemon is killed and restarted by the systemd watchdog', async () => {
    const mainPid = Number((await box.exec(['systemctl', 'show', '-P', 'MainPID', 'piota.service'])).stdout.trim());
    expect(mainPid).toBeGreaterThan(1);
    // systemd's own way to signal a unit's main process (the image has no kill(1) outside a shell).
    const stop = await box.exec(['systemctl', 'kill', '--signal=SIGSTOP', '--kill-whom=main', 'piota.service']);
    expect(stop.status, stop.stderr).toBe(0);
    expect((await box.exec(['systemctl', 'show', '-P', 'MainPID', 'piota.service'])).stdout.trim()).toBe(String(mainPid));
    const show = async (property: string) => (await box.exec(['systemctl', 'show', '-P', property, 'piota.service'])).stdout.trim();
    await waitFor('a restart by the watchdog', async () => {
      return Number(await show('NRestarts')) >= 1 && Number(await show('MainPID')) !== mainPid && (await show('ActiveState')) === 'active' ? true : undefined;
    }, 90_000);
    expect(await show('Result')).toBe('success');
    const log = await box.exec(['journalctl', '-u', 'piota', '-b', '-q', '--no-pager', '-o', 'cat']);
    expect(log.stdout).toMatch(/piota\.service: Watchdog timeout \(limit 6s\)/);
    expect(log.stdout).toMatch(/Failed with result 'watchdog'/);
  }, 120_000);
});
