import { spawn, spawnSync } from 'node:child_process';
import { ImageError } from './image-error.js';

export interface RunOptions {
  /** Written to the tool's stdin. */
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  /** Resolve with the result instead of throwing when the tool exits non-zero. */
  allowFailure?: boolean;
  /**
   * A short tool that changes the kernel's state (attaching a loop device, mounting): a signal lets
   * it finish rather than stopping it, so that what it made is known and can be undone. Stopped
   * half-way, `losetup --find --show` may attach a device and die before it names it.
   */
  finishOnSignal?: boolean;
}

export interface RunResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/**
 * Tools running now, so that a signal can stop them before their loop devices are detached; each
 * with whether it is let finish instead (`finishOnSignal`).
 */
const running = new Map<ReturnType<typeof spawn>, boolean>();

/**
 * Stops every tool still running (SIGTERM), lets those marked `finishOnSignal` finish, and
 * resolves when all have exited.
 */
export async function stopRunningTools(): Promise<void> {
  await Promise.all(
    [...running].map(
      ([child, finishOnSignal]) =>
        new Promise<void>((resolve) => {
          child.once('close', () => resolve());
          if (!finishOnSignal) child.kill('SIGTERM');
        }),
    ),
  );
}

/**
 * Runs a host tool (sfdisk, e2fsck, mtools...) to its end. A non-zero exit becomes an ImageError
 * naming the command and the tool's own last lines, which say what went wrong.
 */
export function runTool(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env: options.env ?? process.env });
    running.set(child, options.finishOnSignal ?? false);
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => {
      err = (err + c.toString('utf8')).slice(-20_000);
    });
    child.on('error', (e) => reject(new ImageError('host', `${command}: cannot run it (${e.message})`)));
    child.on('close', (code) => {
      running.delete(child);
      const result = { code: code ?? 128, stdout: Buffer.concat(out), stderr: err };
      if (result.code === 0 || options.allowFailure) return resolve(result);
      const detail = err.trim().split('\n').slice(-4).join(' / ') || `exit ${result.code}`;
      reject(new ImageError('failed', `${command} ${args.join(' ')}: ${detail}`));
    });
    child.stdin.on('error', () => undefined); // a tool that exits without reading its input
    child.stdin.end(options.input ?? '');
  });
}

/** Runs a tool and returns its stdout as text. */
export async function toolText(command: string, args: readonly string[], options: RunOptions = {}): Promise<string> {
  return (await runTool(command, args, options)).stdout.toString('utf8');
}

/** The host tools from `tools` (name -> Debian package) that are not on PATH, as "name (package)". */
export function missingTools(tools: Record<string, string>): string[] {
  return Object.entries(tools)
    .filter(([name]) => spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status !== 0)
    .map(([name, pkg]) => `${name} (apt install ${pkg})`);
}
