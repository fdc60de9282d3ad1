import { spawn } from 'node:child_process';

/** A host tool failed: the message names the command and carries its stderr. */
export class HostCommandError extends Error {
  override name = 'HostCommandError';
}

/** Runs a host tool to its end and returns its stdout; throws HostCommandError on a non-zero exit. */
export function runHost(command: string, args: readonly string[], options: { input?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    // MTOOLS_SKIP_CHECK: a partition's loop device has no disk geometry for mtools to agree with.
    const child = spawn(command, args, { stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('error', (err: NodeJS.ErrnoException) =>
      reject(new HostCommandError(err.code === 'ENOENT' ? `${command} is not installed (needed by piota simulate --image)` : `${command}: ${err.message}`)),
    );
    child.on('close', (code) => {
      if (code === 0) resolve(stdout);
      else reject(new HostCommandError(`${command} ${args.join(' ')} failed (exit ${code}): ${stderr.trim().split('\n').slice(-3).join(' ')}`));
    });
    if (options.input !== undefined) {
      child.stdin!.on('error', () => undefined); // a tool that exits without reading: its exit code says why
      child.stdin!.end(options.input);
    }
  });
}
