import { CommandError, HelpRequested, UsageError, type CommandEntry } from './command.js';
import { packageVersion } from './version.js';
import { commands } from './registry.js';

function overview(): string {
  const width = Math.max(...commands.map((c) => c.path.join(' ').length));
  const lines = commands.map((c) => `  piota ${c.path.join(' ').padEnd(width)}  ${c.summary}`);
  return [
    'piota: signed A/B firmware updates for Raspberry Pi fleets on Azure IoT Hub',
    '',
    'Usage: piota <command> [options]',
    '',
    'Commands:',
    ...lines,
    '',
    'Every command takes --help. piota --version prints the version.',
  ].join('\n');
}

/** Finds the command whose words are the longest prefix of argv. */
function select(argv: string[]): { command: CommandEntry; rest: string[] } | undefined {
  let best: { command: CommandEntry; rest: string[] } | undefined;
  for (const command of commands) {
    const n = command.path.length;
    if (argv.length >= n && command.path.every((w, i) => argv[i] === w)) {
      if (!best || n > best.command.path.length) best = { command, rest: argv.slice(n) };
    }
  }
  return best;
}

/** Lists the subcommands under a group word such as `hub` or `bundle`. */
function groupHelp(word: string): string | undefined {
  const members = commands.filter((c) => c.path[0] === word && c.path.length > 1);
  if (members.length === 0) return undefined;
  const width = Math.max(...members.map((c) => c.path.join(' ').length));
  return [`Usage: piota ${word} <command> [options]`, '', ...members.map((c) => `  piota ${c.path.join(' ').padEnd(width)}  ${c.summary}`)].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  try {
    if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
      process.stdout.write(overview() + '\n');
      return argv.length === 0 ? 2 : 0;
    }
    if (argv[0] === '--version' || argv[0] === '-V') {
      process.stdout.write(packageVersion() + '\n');
      return 0;
    }
    const found = select(argv);
    if (!found) {
      const group = groupHelp(argv[0]);
      if (group && (argv.length === 1 || argv[1] === '--help' || argv[1] === '-h')) {
        process.stdout.write(group + '\n');
        return argv.length === 1 ? 2 : 0;
      }
      throw new UsageError(`unknown command '${argv.slice(0, group ? 2 : 1).join(' ')}' (see piota --help)`);
    }
    return await (await found.command.load()).run(found.rest);
  } catch (err) {
    return report(err);
  }
}

function report(err: unknown): number {
  if (err instanceof HelpRequested) {
    process.stdout.write(err.help.trimEnd() + '\n');
    return 0;
  }
  if (err instanceof UsageError) {
    process.stderr.write(`piota: ${err.message}\n`);
    return 2;
  }
  if (err instanceof CommandError) {
    process.stderr.write(`piota: ${err.message}\n`);
    return err.exitCode;
  }
  const e = err as Error;
  process.stderr.write(`piota: ${e?.message ?? String(err)}\n`);
  if (process.env.PIOTA_DEBUG) process.stderr.write(`${e?.stack ?? ''}\n`);
  return 1;
}
