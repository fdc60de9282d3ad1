import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import {
  notify, notifyReady, notifyStopping, notifyWatchdog, startWatchdogPings, watchdogIntervalMs, SystemdNotifyError,
} from '../../src/os/systemd-notify.js';

// A real receiver for the notification protocol, playing systemd's side: an AF_UNIX datagram
// socket with SO_PASSCRED, which prints each message with the PID the kernel vouches for and
// closes passed descriptors (which is how systemd answers systemd-notify's BARRIER=1).
const RECEIVER = `
import json, os, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind(sys.argv[1])
print(json.dumps({"ready": True}), flush=True)
while True:
    data, anc, flags, addr = s.recvmsg(4096, socket.CMSG_SPACE(12) + socket.CMSG_SPACE(64 * 4))
    pid = None
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", payload[:12])[0]
        elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            for i in range(len(payload) // 4):
                os.close(struct.unpack_from("i", payload, i * 4)[0])
    print(json.dumps({"text": data.decode(), "pid": pid}), flush=True)
`;

interface Message { text: string; pid: number | null }

const haveTools = spawnSync('python3', ['-c', 'import socket; socket.SCM_CREDENTIALS']).status === 0
  && spawnSync('systemd-notify', ['--version']).status === 0;
if (!haveTools) console.warn('systemd-notify tests skipped: they need python3 (the test receiver) and systemd-notify');

describe.skipIf(!haveTools)('systemd-notify adapter', () => {
  let dir: string;
  let socketPath: string;
  let receiver: ChildProcessWithoutNullStreams;
  let messages: Message[] = [];
  const saved = { ...process.env };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'piota-notify-'));
    socketPath = join(dir, 'notify.sock');
    receiver = spawn('python3', ['-c', RECEIVER, socketPath]);
    await new Promise<void>((resolve, reject) => {
      receiver.once('error', reject);
      receiver.once('exit', (code) => reject(new Error(`receiver exited ${code}`)));
      createInterface({ input: receiver.stdout }).on('line', (line) => {
        const m = JSON.parse(line);
        if (m.ready) resolve();
        else messages.push(m);
      });
    });
  });

  afterAll(async () => {
    receiver?.kill();
    await rm(dir, { recursive: true, force: true });
  });

  afterEach(() => {
    for (const k of ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID']) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
    messages = [];
  });

  it('does nothing outside systemd', async () => {
    delete process.env.NOTIFY_SOCKET;
    await notifyReady();
    await notifyWatchdog();
    await notifyStopping();
    expect(startWatchdogPings()).toBeTypeOf('function');
    await new Promise((r) => setTimeout(r, 100));
    expect(messages).toEqual([]);
  });

  it('sends READY=1 on behalf of this process, and resolves only after the receiver has it', async () => {
    process.env.NOTIFY_SOCKET = socketPath;
    await notifyReady();
    // The barrier: systemd-notify waited for the receiver to close the descriptor it passed,
    // so the READY=1 before it has been read by the time the promise resolves.
    await new Promise((r) => setTimeout(r, 50));
    const ready = messages.find((m) => m.text.split('\n').includes('READY=1'));
    expect(ready).toBeDefined();
    expect(messages.some((m) => m.text.includes('BARRIER=1'))).toBe(true);
    // As root, systemd-notify speaks with its parent's credentials: the message is attributed to
    // the long-lived main process, not the short-lived child (which could be gone before systemd
    // looks up its cgroup).
    if (process.getuid?.() === 0) expect(ready!.pid).toBe(process.pid);
    else console.warn('not root: the PID attribution check needs root (CAP_SYS_ADMIN to send another PID)');
  });

  it('sends WATCHDOG=1 and STOPPING=1', async () => {
    process.env.NOTIFY_SOCKET = socketPath;
    await notifyWatchdog();
    await notifyStopping();
    await new Promise((r) => setTimeout(r, 50));
    const texts = messages.map((m) => m.text).filter((t) => !t.includes('BARRIER=1'));
    expect(texts).toEqual(['WATCHDOG=1', 'STOPPING=1']);
  });

  it('pings the watchdog every WATCHDOG_USEC/2 and stops when told', async () => {
    process.env.NOTIFY_SOCKET = socketPath;
    process.env.WATCHDOG_USEC = '300000';
    process.env.WATCHDOG_PID = String(process.pid);
    const errors: Error[] = [];
    const stop = startWatchdogPings({ onError: (e) => errors.push(e) });
    await new Promise((r) => setTimeout(r, 800));
    stop();
    await new Promise((r) => setTimeout(r, 300));
    const pings = messages.filter((m) => m.text === 'WATCHDOG=1').length;
    expect(errors).toEqual([]);
    expect(pings).toBeGreaterThanOrEqual(2);
    expect(pings).toBeLessThanOrEqual(6);
    const after = messages.length;
    await new Promise((r) => setTimeout(r, 400));
    expect(messages.length).toBe(after);
  });

  it('reports a failure with the reason', async () => {
    const env = { ...process.env, NOTIFY_SOCKET: join(dir, 'nobody-listens.sock') };
    const err = await notify('READY=1', env).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SystemdNotifyError);
    expect((err as Error).message).toMatch(/systemd-notify READY=1 failed \(exit \d+\): .+/);
    const missing = await notify('READY=1', { ...env, PATH: dir }).catch((e: unknown) => e);
    expect((missing as Error).message).toMatch(/systemd-notify not found/);
  });
});

describe('watchdogIntervalMs', () => {
  it('is half of WATCHDOG_USEC, and only for the PID systemd named', () => {
    expect(watchdogIntervalMs({ NOTIFY_SOCKET: '/x', WATCHDOG_USEC: '60000000' })).toBe(30_000);
    expect(watchdogIntervalMs({ NOTIFY_SOCKET: '/x', WATCHDOG_USEC: '60000000', WATCHDOG_PID: String(process.pid) })).toBe(30_000);
    expect(watchdogIntervalMs({ NOTIFY_SOCKET: '/x', WATCHDOG_USEC: '60000000', WATCHDOG_PID: '1' })).toBeUndefined();
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '60000000' })).toBeUndefined();
    expect(watchdogIntervalMs({ NOTIFY_SOCKET: '/x', WATCHDOG_USEC: 'soon' })).toBeUndefined();
  });
});
