import { execFile } from 'node:child_process';
import { outsideSignal, systemShuttingDown } from '../os/system-shutdown.js';
import { BootError } from './backend.js';
import { currentRebootArgv, rejectsPositionalArgument, rejectsRebootArgumentOption, REBOOT_ARGUMENT_OPTION } from './systemctl-reboot-argv.js';

/** Where a rewritten reboot command is reported; src/boot stays free of the logger library. */
export type RebootLog = (msg: string, fields: object) => void;

export interface RebootCommandOptions {
  timeoutMs?: number;
  /** Warnings about the command actually run; default one line on stderr (the journal under systemd). */
  log?: RebootLog;
}

const stderrLog: RebootLog = (msg, fields) => process.stderr.write(`piota: warning: ${msg} ${JSON.stringify(fields)}\n`);

/**
 * Runs a reboot command given as an argv array (no shell, so `0 tryboot` stays one argument).
 * Resolves when the command exits 0: the reboot was accepted, the system will stop us soon.
 *
 * The legacy `systemctl reboot "0 tryboot"` (refused by systemd >= 253) runs as
 * `systemctl reboot "--reboot-argument=0 tryboot"`, with a warning naming both; only a systemctl
 * that says it does not know that option (systemd < 246) gets the configured form instead.
 *
 * A command that fails because the shutdown it started got to it first counts as accepted: the
 * stop of this service signals every process of its cgroup, `systemctl` among them when it is
 * still waiting for its job; or systemd says the system is already stopping.
 */
export async function runRebootCommand(argv: readonly string[], options: RebootCommandOptions = {}): Promise<void> {
  const { timeoutMs = 60_000, log = stderrLog } = options;
  if (argv.length === 0 || argv[0] === '') throw new BootError('commandFailed', 'the reboot command is empty');
  const current = currentRebootArgv(argv);
  if (!current) return settle(argv, await run(argv, timeoutMs), log);

  log(`the reboot command passes the reboot argument positionally, which systemd 253 and later refuse ("Too many arguments"); running the ${REBOOT_ARGUMENT_OPTION}= form instead`, {
    configured: argv,
    running: current,
  });
  const outcome = await run(current, timeoutMs);
  if (outcome.failed && rejectsRebootArgumentOption(outcome.stderr)) {
    log(`this systemctl does not know ${REBOOT_ARGUMENT_OPTION} (systemd older than 246); running the configured form`, { configured: argv, running: argv });
    return settle(argv, await run(argv, timeoutMs), log);
  }
  return settle(current, outcome, log);
}

interface Outcome {
  failed: boolean;
  /** The signal that ended the command, when it came from elsewhere (not this process's timeout). */
  signal: string | null;
  stderr: string;
  message: string;
}

function run(argv: readonly string[], timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    execFile(argv[0], argv.slice(1), { timeout: timeoutMs }, (err, _stdout, stderr) => {
      resolve({ failed: err !== null, signal: outsideSignal(err), stderr: String(stderr), message: err?.message ?? '' });
    });
  });
}

/** Resolves when the command was accepted, or failed only because the shutdown it began is under way; throws otherwise. */
async function settle(argv: readonly string[], outcome: Outcome, log: RebootLog): Promise<void> {
  if (!outcome.failed) return;
  if (outcome.signal !== null || (await systemShuttingDown())) {
    log('the reboot command was ended by the shutdown it started; taken as accepted', { command: argv, signal: outcome.signal, stderr: outcome.stderr.trim() });
    return;
  }
  throw failure(argv, outcome);
}

/** The error a person can act on, for a command that failed. */
function failure(argv: readonly string[], outcome: Outcome): BootError {
  const shown = argv.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(' ');
  const detail = outcome.stderr.trim().split('\n').pop() || outcome.message;
  const hint = rejectsPositionalArgument(argv, outcome.stderr)
    ? ` (systemd 253 and later take the reboot argument only as ${REBOOT_ARGUMENT_OPTION}=..., e.g. systemctl reboot "${REBOOT_ARGUMENT_OPTION}=0 tryboot")`
    : '';
  return new BootError('commandFailed', `reboot command '${shown}' failed: ${detail}${hint}`);
}
