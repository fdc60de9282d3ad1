import { readFile } from 'node:fs/promises';
import { CommandError } from './command.js';

/** The JSON object of `--daemon-config FILE` (the simulators' daemon config overrides), or a CommandError naming the file. */
export async function readDaemonConfigOverrides(path: string): Promise<Record<string, unknown>> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new CommandError(`--daemon-config ${path}: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new CommandError(`--daemon-config ${path}: expected a JSON object`);
  return parsed as Record<string, unknown>;
}
