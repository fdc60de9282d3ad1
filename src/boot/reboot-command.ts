import { execFile } from 'node:child_process';
import { BootError } from './backend.js';

/**
 * Runs a reboot command given as an argv array (no shell, so `0 tryboot` stays one argument).
 * Resolves when the command exits 0: the reboot was accepted, the system will stop us soon.
 */
export function runRebootCommand(argv: readonly string[], timeoutMs = 60_000): Promise<void> {
  if (argv.length === 0 || argv[0] === '') return Promise.reject(new BootError('commandFailed', 'the reboot command is empty'));
  const shown = argv.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(' ');
  return new Promise((resolve, reject) => {
    execFile(argv[0], argv.slice(1), { timeout: timeoutMs }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const detail = String(stderr).trim().split('\n').pop() || err.message;
      reject(new BootError('commandFailed', `reboot command '${shown}' failed: ${detail}`));
    });
  });
}
