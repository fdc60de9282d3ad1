import { writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * A stand-in for `piota daemon` (through the simulator's PIOTA_SIM_DAEMON hook / daemonCommand), so
 * the firmware rules are tested on their own. It is a real process: it reads the config it is
 * given, records each start with what the device tree said, leaves a file in the runtime directory,
 * and behaves as STUB_MODE says:
 *   idle           wait; SIGTERM -> exit 0 (STUB_IGNORE_TERM=1: ignore it); SIGUSR2 -> exit 3 (a crash)
 *   crash          exit 3 at once
 *   tryboot-once   on the first non-trial start, run the config's trybootCommand, then idle
 */
const source = String.raw`
const fs = require('fs');
const path = require('path');
const { execFile } = require('child_process');
const config = JSON.parse(fs.readFileSync(process.argv[process.argv.indexOf('--config') + 1], 'utf8'));
const logFile = process.env.STUB_LOG;
const record = (event) => fs.appendFileSync(logFile, JSON.stringify({ pid: process.pid, ...event }) + '\n');
const dt = (name) => fs.readFileSync(path.join(config.boot.deviceTreeDir, name)).readUInt32BE(0);
const runtimeBefore = fs.readdirSync(config.runtimeDir);
fs.writeFileSync(path.join(config.runtimeDir, 'lock-' + process.pid), '');
const tryboot = dt('tryboot');
const mode = process.env.STUB_MODE || 'idle';
if (mode === 'crash') process.exit(3);
let pending = null;
process.on('SIGTERM', () => {
  record({ event: 'sigterm' });
  if (process.env.STUB_IGNORE_TERM === '1') return;
  if (pending) pending.then(() => process.exit(0));
  else process.exit(0);
});
process.on('SIGUSR2', () => process.exit(3));
setInterval(() => {}, 1000);
// Recorded once the handlers are in place, so a test that waits for it can signal safely.
record({ event: 'start', partition: dt('partition'), tryboot, runtimeBefore });
if (mode === 'tryboot-once' && tryboot === 0 && !fs.existsSync(logFile + '.done')) {
  fs.writeFileSync(logFile + '.done', '');
  const [cmd, ...args] = config.boot.trybootCommand;
  pending = new Promise((resolve) =>
    execFile(cmd, args, { env: {} }, (err, stdout, stderr) => resolve(record({ event: 'tryboot-command', ok: !err, stderr }))));
}
`;

export async function writeStubDaemon(dir: string): Promise<string> {
  const path = join(dir, 'stub-daemon.cjs');
  await writeFile(path, source);
  return path;
}

export interface StubEvent {
  pid: number;
  event: 'start' | 'sigterm' | 'tryboot-command';
  partition?: number;
  tryboot?: number;
  runtimeBefore?: string[];
  ok?: boolean;
  stderr?: string;
}

export async function stubEvents(logFile: string): Promise<StubEvent[]> {
  const text = await readFile(logFile, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as StubEvent);
}
