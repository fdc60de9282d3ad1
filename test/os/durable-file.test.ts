import { describe, it, expect } from 'vitest';
import { mkdtemp, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileDurably } from '../../src/os/durable-file.js';
import { readStateFile, writeStateFile, StateFileError } from '../../src/os/state-file.js';

describe('writeFileDurably', () => {
  it('replaces the content and leaves no temp file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'piota-durable-'));
    const p = join(dir, 'f.json');
    await writeFileDurably(p, 'one');
    await writeFileDurably(p, 'two');
    expect(await readFile(p, 'utf8')).toBe('two');
    expect(await readdir(dir)).toEqual(['f.json']);
  });

  it('creates secrets with the mode asked for', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'piota-durable-'));
    const p = join(dir, 'sub', 'secret');
    await writeFileDurably(p, 'x', { mode: 0o600, mkdirs: true });
    expect((await stat(p)).mode & 0o777).toBe(0o600);
  });
});

describe('state files', () => {
  const validate = (d: unknown) => {
    if (typeof (d as { n?: unknown }).n !== 'number') throw new Error('n: expected a number');
    return d as { n: number };
  };

  it('round-trips and reports a missing file as undefined', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'piota-state-'));
    expect(await readStateFile(join(dir, 'none.json'), 1, validate)).toBeUndefined();
    await writeStateFile(join(dir, 's.json'), 1, { n: 5 });
    expect(await readStateFile(join(dir, 's.json'), 1, validate)).toEqual({ n: 5 });
  });

  it('refuses a newer schema and keeps the file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'piota-state-'));
    const p = join(dir, 's.json');
    await writeStateFile(p, 3, { n: 1 });
    const before = await readFile(p, 'utf8');
    await expect(readStateFile(p, 2, validate)).rejects.toMatchObject({ reason: 'newerSchema' });
    expect(await readFile(p, 'utf8')).toBe(before);
  });

  it('names malformed and invalid content', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'piota-state-'));
    const p = join(dir, 's.json');
    await writeFile(p, '{"schema":1,"data":{"n":"x"}}');
    const err = await readStateFile(p, 1, validate).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StateFileError);
    expect((err as StateFileError).message).toContain('n: expected a number');
    await writeFile(p, '{half');
    await expect(readStateFile(p, 1, validate)).rejects.toMatchObject({ reason: 'malformed' });
  });
});
