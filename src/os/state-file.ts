import { readFile } from 'node:fs/promises';
import { writeFileDurably, type DurableWriteOptions } from './durable-file.js';

/** A state file whose content this program cannot use: names the file and what is wrong. */
export class StateFileError extends Error {
  override name = 'StateFileError';
  constructor(
    readonly path: string,
    readonly reason: 'unreadable' | 'malformed' | 'newerSchema' | 'invalid',
    message: string,
  ) {
    super(`${path}: ${message}`);
  }
}

interface Envelope<T> {
  schema: number;
  /** Which program wrote the file (e.g. "piota 0.2.0"), for a person reading it. */
  writtenBy?: string;
  data: T;
}

export interface StateFileWriteOptions extends DurableWriteOptions {
  writtenBy?: string;
}

/**
 * Writes `{schema, data}` durably. Every persisted file carries the schema version of the program
 * that wrote it, so an older agent (after a rollback) recognises a file it does not understand.
 */
export async function writeStateFile<T>(path: string, schema: number, data: T, options: StateFileWriteOptions = {}): Promise<void> {
  const envelope: Envelope<T> = options.writtenBy ? { schema, writtenBy: options.writtenBy, data } : { schema, data };
  await writeFileDurably(path, JSON.stringify(envelope, null, 2) + '\n', options);
}

/**
 * Reads a state file written by writeStateFile. Returns undefined when the file does not exist.
 * A file from a newer schema than `schema` is kept untouched and reported (reason 'newerSchema');
 * pass Infinity when `validate` knows how to read newer files.
 * `validate` checks the data's shape and throws an Error naming the bad field.
 */
export async function readStateFile<T>(
  path: string,
  schema: number,
  validate: (data: unknown) => T,
): Promise<T | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new StateFileError(path, 'unreadable', (err as Error).message);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new StateFileError(path, 'malformed', `not valid JSON (${(err as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || typeof (parsed as Envelope<unknown>).schema !== 'number' || !('data' in parsed)) {
    throw new StateFileError(path, 'malformed', 'expected an object {schema, data}');
  }
  const env = parsed as Envelope<unknown>;
  if (!Number.isInteger(env.schema) || env.schema < 1) throw new StateFileError(path, 'malformed', `schema ${JSON.stringify(env.schema)} is not a version number`);
  if (env.schema > schema) {
    throw new StateFileError(
      path,
      'newerSchema',
      `written by a newer piota (schema ${env.schema}; this one knows ${schema}); left as it is`,
    );
  }
  try {
    return validate(env.data);
  } catch (err) {
    throw new StateFileError(path, 'invalid', (err as Error).message);
  }
}
