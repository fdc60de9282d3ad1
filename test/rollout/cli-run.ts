import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'piota.js');

export interface CliRun {
  child: ChildProcess;
  /** Resolves with the exit code and everything printed. */
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
  stdout(): string;
}

/** `node bin/piota.js ARGS` as a user runs it (the built dist/), in its own process. */
export function piota(args: string[], options: { env?: Record<string, string>; cwd?: string } = {}): CliRun {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  return { child, done, stdout: () => stdout };
}
