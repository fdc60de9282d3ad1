import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { createLogger } from '../../src/os/logger.js';

// The logger's `<N>` prefixes read by a real systemd-journald: one started in a private mount
// namespace (its own /run and /var/log, so this machine's journal is not touched). The test writes
// to journald's stdout-stream socket the way systemd connects a service's stdout, then asks
// journalctl what was stored.
const JOURNALD = ['/lib/systemd/systemd-journald', '/usr/lib/systemd/systemd-journald'].find((p) => existsSync(p));

function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (a private mount namespace)';
  if (!JOURNALD) return 'systemd-journald is not installed';
  if (!existsSync('/etc/machine-id')) return 'journald needs /etc/machine-id';
  if (spawnSync('unshare', ['-m', 'true']).status !== 0) return 'unshare -m is not permitted here';
  return undefined;
}
const skip = skipReason();
if (skip) console.warn(`journald test skipped: ${skip}`);

describe.skipIf(skip !== undefined)('createLogger into a real journald', () => {
  let journald: ChildProcess;
  let runDir: string;

  beforeAll(async () => {
    journald = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c',
      'mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /var/log && mkdir -p /run/systemd/journal /run/log/journal && exec "$0"',
      JOURNALD!], { stdio: 'ignore' });
    // unshare and sh exec into journald: its PID is the spawned one; its /run is reachable from
    // here through /proc/PID/root.
    runDir = `/proc/${journald.pid}/root/run`;
    const deadline = Date.now() + 10_000;
    while (!existsSync(`${runDir}/systemd/journal/stdout`)) {
      if (Date.now() > deadline || journald.exitCode !== null) throw new Error('journald did not start');
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  afterAll(() => {
    journald?.kill();
  });

  it('stores each line with the priority of its pino level and without the prefix', async () => {
    const socket: Socket = connect(`${runDir}/systemd/journal/stdout`);
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    // The stream header systemd sends for a service (sd_journal_stream_fd): identifier, unit,
    // default priority, level prefix on, no forwarding to syslog, kmsg or console.
    socket.write('piota-journal-test\n\n6\n1\n0\n0\n0\n');
    const log = createLogger({ destination: socket, journal: true, level: 'debug' });
    log.debug('d');
    log.info({ updateId: 'u-1' }, 'i');
    log.warn('w');
    log.error({ connectionString: 'HostName=h;DeviceId=d;SharedAccessKey=SECRET' }, 'e');
    await new Promise<void>((resolve) => socket.end(resolve));

    let entries: { PRIORITY: string; MESSAGE: string }[] = [];
    const deadline = Date.now() + 10_000;
    while (entries.length < 4 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      const r = spawnSync('journalctl', ['-D', `${runDir}/log/journal`, '-t', 'piota-journal-test', '-o', 'json', '--no-pager'], { encoding: 'utf8' });
      entries = r.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
    }
    expect(entries.map((e) => e.PRIORITY)).toEqual(['7', '6', '4', '3']);
    const messages = entries.map((e) => JSON.parse(e.MESSAGE));
    expect(messages.map((m) => m.msg)).toEqual(['d', 'i', 'w', 'e']);
    expect(messages[1].updateId).toBe('u-1');
    expect(JSON.stringify(entries)).not.toContain('SECRET');

    const warnings = spawnSync('journalctl', ['-D', `${runDir}/log/journal`, '-t', 'piota-journal-test', '-p', 'warning', '-o', 'cat', '--no-pager'], { encoding: 'utf8' });
    expect(warnings.stdout.trim().split('\n').map((l) => JSON.parse(l).msg)).toEqual(['w', 'e']);
  });
});
