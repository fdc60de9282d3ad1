import { describe, it, expect } from 'vitest';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withTempDir } from '../helpers/with-temp-dir.js';
import { SecurityFloor } from '../../src/agent/security-floor.js';

const withDir = (f: (dir: string) => Promise<void>) => withTempDir('piota-floor-', f);

describe('the anti-rollback floor', () => {
  it('starts at the highest seed (the config and the slot records) and writes it down', async () => {
    await withDir(async (dir) => {
      const floor = await SecurityFloor.load(dir, [3, 0, 5], () => undefined);
      expect(floor.current).toBe(5);
      expect(JSON.parse(await readFile(floor.path, 'utf8')).data.minimum).toBe(5);
    });
  });

  it('only rises, and survives a state reset (it is not in state.json) and a lower seed', async () => {
    await withDir(async (dir) => {
      const floor = await SecurityFloor.load(dir, [1], () => undefined);
      await floor.raise(7, '2.0.0');
      await floor.raise(4, '1.5.0');
      expect(floor.current).toBe(7);
      // A new state.json, an older image booted again with a lower seed: the file holds.
      await writeFile(join(dir, 'state.json'), '{"schema":2,"data":{"slots":{"A":null,"B":null},"update":null,"newestTimestamp":0}}');
      const again = await SecurityFloor.load(dir, [0], () => undefined);
      expect(again.current).toBe(7);
    });
  });

  it('a damaged file is reported and cannot lower the floor below the seeds; the next raise rewrites it', async () => {
    await withDir(async (dir) => {
      const reports: string[] = [];
      await writeFile(join(dir, 'security-floor.json'), '{"schema":1,"data":{"minimum":-3}}');
      const floor = await SecurityFloor.load(dir, [2], (m) => reports.push(m));
      expect(reports[0]).toContain('security-floor.json');
      expect(floor.current).toBe(2);
      await floor.raise(3, '3.0.0');
      expect(JSON.parse(await readFile(floor.path, 'utf8')).data).toMatchObject({ minimum: 3, raisedBy: '3.0.0' });
    });
  });
});
