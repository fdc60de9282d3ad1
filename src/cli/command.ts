import { parseArgs, type ParseArgsConfig } from 'node:util';

/** A mistake in how the command was called: one line on stderr, exit 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/**
 * An error the user can act on (a missing file, a refused bundle, an unreachable hub):
 * printed as one line, exit code `exitCode` (1 unless said otherwise). Never a stack trace.
 */
export class CommandError extends Error {
  override name = 'CommandError';
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/** Thrown by parseCommandArgs when --help was given; main prints the help and exits 0. */
export class HelpRequested extends Error {
  override name = 'HelpRequested';
  constructor(readonly help: string) {
    super('help requested');
  }
}

export interface Command {
  /** The words that select it, e.g. ['hub', 'start']. */
  readonly path: readonly string[];
  /** The whole --help text. */
  readonly help: string;
  /** Runs with the arguments after the command words; resolves to the exit code. */
  run(argv: string[]): Promise<number>;
}

/** A command as the list knows it, before its module is loaded. */
export interface CommandEntry {
  readonly path: readonly string[];
  /** One line for the command list. */
  readonly summary: string;
  load(): Promise<Command>;
}

type Options = NonNullable<ParseArgsConfig['options']>;

export interface ParsedArgs<O extends Options> {
  values: { [K in keyof O]: O[K] extends { type: 'boolean' } ? boolean | undefined
    : O[K] extends { multiple: true } ? string[] | undefined : string | undefined };
  positionals: string[];
}

/**
 * util.parseArgs in strict mode, with `--help` built in and every parse failure turned into a
 * UsageError that names the command.
 */
export function parseCommandArgs<O extends Options>(
  command: Pick<Command, 'path' | 'help'>,
  argv: string[],
  options: O,
  positionals: { min?: number; max?: number } = { min: 0, max: 0 },
): ParsedArgs<O> {
  const name = `piota ${command.path.join(' ')}`;
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new UsageError(`${name}: ${(err as Error).message.split('\n')[0]} (see --help)`);
  }
  if ((parsed.values as Record<string, unknown>).help) throw new HelpRequested(command.help);
  const count = parsed.positionals.length;
  const min = positionals.min ?? 0;
  const max = positionals.max ?? 0;
  if (count < min) throw new UsageError(`${name}: missing argument (see --help)`);
  if (count > max) throw new UsageError(`${name}: unexpected argument '${parsed.positionals[max]}' (see --help)`);
  return parsed as unknown as ParsedArgs<O>;
}

/** The value of a required option, or a UsageError naming it. */
export function required(command: Pick<Command, 'path'>, values: Record<string, unknown>, name: string): string {
  const v = values[name];
  if (typeof v !== 'string' || v === '') {
    throw new UsageError(`piota ${command.path.join(' ')}: --${name} is required (see --help)`);
  }
  return v;
}

/** Parses a whole decimal number option within [min, max], or throws a UsageError naming it. */
export function integerOption(
  command: Pick<Command, 'path'>,
  name: string,
  raw: string | undefined,
  fallback: number,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new UsageError(`piota ${command.path.join(' ')}: --${name} must be a whole number from ${min} to ${max}, got '${raw}'`);
  }
  return Number(raw);
}
