import { spawn } from 'node:child_process';
import { open, readdir, readFile } from 'node:fs/promises';

/** systemd-nspawn's exit status when the container's system rebooted (0 when it powered off). */
export const NSPAWN_REBOOTED = 133;

export interface Bind {
  host: string;
  guest: string;
  readOnly?: boolean;
}

export interface ContainerSpec {
  root: string;
  hostname: string;
  binds: readonly Bind[];
  /** Units pulled into the boot (systemd.wants= on the container's command line). */
  wants: readonly string[];
  /** The console (systemd's boot and shutdown messages) is appended here. */
  consoleLog: string;
}

export interface RunningContainer {
  /** The systemd-nspawn process. */
  nspawnPid: number;
  /** The container's PID 1 (its systemd) as the host sees it; SIGKILL of it is a power cut. */
  initPid(): Promise<number | undefined>;
  /** systemd-nspawn's exit: its status, or the signal that ended it. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Asks the system to power off, as the power button would (SIGTERM to nspawn). */
  powerOff(): void;
}

/**
 * Boots `spec.root` with systemd as PID 1. --register=no --keep-unit: the host needs no systemd of
 * its own (nothing registers with machined, no scope is made). The container shares the host's
 * network, so the hub emulator on loopback is reachable as on the host.
 */
export async function bootContainer(spec: ContainerSpec): Promise<RunningContainer> {
  const args = ['--quiet', '--boot', '--register=no', '--keep-unit', '--console=read-only', `--directory=${spec.root}`, `--hostname=${spec.hostname}`];
  for (const b of spec.binds) args.push(`${b.readOnly ? '--bind-ro' : '--bind'}=${b.host}:${b.guest}`);
  // After the directory: the container's systemd reads these as its kernel command line.
  args.push('systemd.log_color=0', ...spec.wants.map((u) => `systemd.wants=${u}`));
  const log = await open(spec.consoleLog, 'a');
  const child = spawn('systemd-nspawn', args, { stdio: ['ignore', log.fd, log.fd] });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('error', () => resolve({ code: 127, signal: null }));
    child.on('close', (code, signal) => {
      void log.close();
      resolve({ code, signal });
    });
  });
  const nspawnPid = child.pid ?? -1;
  return {
    nspawnPid,
    initPid: () => findContainerInit(nspawnPid),
    exited,
    powerOff: () => child.kill('SIGTERM'),
  };
}

/** The descendant of `pid` that is PID 1 of its own PID namespace (NSpid: <host pid> 1). */
export async function findContainerInit(pid: number): Promise<number | undefined> {
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift()!;
    const status = await readFile(`/proc/${p}/status`, 'utf8').catch(() => '');
    const nspid = /^NSpid:\s+(.*)$/m.exec(status)?.[1].trim().split(/\s+/);
    if (p !== pid && nspid && nspid.length > 1 && nspid[nspid.length - 1] === '1') return p;
    for (const task of await readdir(`/proc/${p}/task`).catch(() => [] as string[])) {
      const children = await readFile(`/proc/${p}/task/${task}/children`, 'utf8').catch(() => '');
      queue.push(...children.split(/\s+/).filter(Boolean).map(Number));
    }
  }
  return undefined;
}
