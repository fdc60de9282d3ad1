/**
 * `piota simulate --image` as a user runs it (the built CLI, a child process), with what the
 * tests look at: its event lines, sim.json, commands run inside the booted system (nsenter into
 * the container's namespaces, as `machinectl shell` would with a host systemd), and the data
 * partition as the rig mounts it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ImageSimState } from '../../src/simulator/image/image-pi.js';
import { waitFor } from '../helpers/wait-for.js';

const bin = fileURLToPath(new URL('../../bin/piota.js', import.meta.url));

export interface BoxOptions {
  image: string;
  dir: string;
  hubDir: string;
  device: string;
  dropIns?: Record<string, string>;
}

export class Box {
  readonly lines: string[] = [];
  private child: ChildProcess | undefined;
  private exit: Promise<number | null> = Promise.resolve(null);

  constructor(private readonly options: BoxOptions) {}

  /** Powers the Pi on (a new `piota simulate --image` on the same DIR). */
  powerOn(): void {
    const o = this.options;
    const args = [bin, 'simulate', '--image', o.image, '--dir', o.dir, '--hub-dir', o.hubDir, '--device', o.device];
    for (const [unit, file] of Object.entries(o.dropIns ?? {})) args.push('--dropin', `${unit}=${file}`);
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let rest = '';
    const keep = (chunk: Buffer) => {
      const text = rest + chunk.toString('utf8');
      const parts = text.split('\n');
      rest = parts.pop()!;
      this.lines.push(...parts);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    this.child = child;
    this.exit = new Promise((resolve) => child.on('close', (code) => resolve(code)));
  }

  /** Powers it off (SIGTERM: the system shuts down) and waits for the rig to exit; its exit code. */
  async powerOff(): Promise<number | null> {
    this.child?.kill('SIGTERM');
    return this.exit;
  }

  exited(): Promise<number | null> {
    return this.exit;
  }

  async sim(): Promise<ImageSimState | undefined> {
    return readFile(join(this.options.dir, 'sim.json'), 'utf8').then((s) => JSON.parse(s) as ImageSimState, () => undefined);
  }

  /** Waits until sim.json satisfies `pred`. */
  waitForSim(what: string, pred: (s: ImageSimState) => boolean, timeoutMs = 120_000): Promise<ImageSimState> {
    return waitFor(what, async () => {
      const s = await this.sim();
      return s && pred(s) ? s : undefined;
    }, timeoutMs);
  }

  /** Waits for an event line of the rig matching `re`. */
  waitForLine(re: RegExp, timeoutMs = 120_000): Promise<string> {
    return waitFor(`a line matching ${re} (got: ${this.lines.slice(-5).join(' | ')})`, async () => this.lines.find((l) => re.test(l)), timeoutMs);
  }

  /** Runs a command inside the booted system. */
  async exec(argv: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
    const s = await this.sim();
    if (!s?.containerPid) throw new Error('no container is running');
    const r = spawnSync('nsenter', ['--target', String(s.containerPid), '--mount', '--uts', '--ipc', '--net', '--pid', '--', ...argv], { encoding: 'utf8', timeout: 60_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  /** Waits until `systemctl is-active UNIT` inside says active (the unit's READY=1 for Type=notify). */
  waitForActive(unit: string, timeoutMs = 120_000): Promise<true> {
    return waitFor(`${unit} active`, async () => {
      const s = await this.sim();
      if (!s?.containerPid) return undefined;
      const r = await this.exec(['systemctl', 'is-active', unit]).catch(() => undefined);
      return r?.stdout.trim() === 'active' ? true : undefined;
    }, timeoutMs);
  }

  /** The data partition as the rig mounts it on the host. */
  dataPath(...parts: string[]): string {
    return join(this.options.dir, 'mnt', 'data', ...parts);
  }
}
