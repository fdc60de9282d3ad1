import { readFile } from 'node:fs/promises';
import { ConfigError, loadConfig } from '../agent/config.js';
import { ConnectionStringError, parseDeviceConnectionString } from '../agent/connection-string.js';
import { parseCommandArgs, UsageError, type Command } from './command.js';

const help = `Usage: piota config check FILE [--json]
       piota config check --connection-string FILE [--json]

Checks a file with the daemon's own rules, so a mistake shows before the daemon
starts (scripts/install.sh runs it on every config and connection string it writes).

  FILE                        a daemon config (/etc/piota/config.json)
  --connection-string FILE    a device connection string file ('-' reads stdin)

Prints "ok: FILE" and exits 0, or prints what is wrong on stderr and exits 2.

Options:
  --json      print {"ok":true} or {"ok":false,"error":"..."} on stdout instead
  -h, --help  this help`;

/** What was wrong with the checked file (its message), or null when it passed. */
async function problemWith(file: string, connectionString: boolean): Promise<string | null> {
  try {
    if (connectionString) await checkConnectionStringFile(file);
    else await loadConfig(file);
    return null;
  } catch (err) {
    if (err instanceof ConfigError || err instanceof ConnectionStringError) return err.message;
    throw err;
  }
}

async function checkConnectionStringFile(file: string): Promise<void> {
  let text: string;
  try {
    text = file === '-' ? await readStdin() : await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`connection string ${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  try {
    parseDeviceConnectionString(text);
  } catch (err) {
    if (err instanceof ConnectionStringError) throw new ConfigError(`connection string ${file}: ${err.message}`);
    throw err;
  }
}

/** All of stdin, whatever it is (a pipe, a socket, a file): readFile('/dev/stdin') fails on a socket. */
async function readStdin(): Promise<string> {
  let text = '';
  for await (const chunk of process.stdin.setEncoding('utf8')) text += chunk as string;
  return text;
}

export const configCheckCommand: Command = {
  path: ['config', 'check'],
  help,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(this, argv, {
      'connection-string': { type: 'string' },
      json: { type: 'boolean' },
    }, { min: 0, max: 1 });
    const csFile = values['connection-string'];
    if ((csFile === undefined) === (positionals.length === 0) || csFile === '') {
      throw new UsageError('piota config check: give either a config FILE or --connection-string FILE (see --help)');
    }
    const file = csFile ?? positionals[0];
    const problem = await problemWith(file, csFile !== undefined);
    if (values.json) {
      process.stdout.write(JSON.stringify(problem === null ? { ok: true } : { ok: false, error: problem }) + '\n');
    } else if (problem === null) {
      process.stdout.write(`ok: ${file}\n`);
    } else {
      process.stderr.write(`${problem}\n`);
    }
    return problem === null ? 0 : 2;
  },
};
