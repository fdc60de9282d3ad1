import { describe, it, expect } from 'vitest';
import { readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { withTempDir } from '../helpers/with-temp-dir.js';
import { StateStore } from '../../src/agent/state-store.js';
import { stateWith, updateIn } from './fakes/ports.js';

const withDir = (f: (dir: string) => Promise<void>) => withTempDir('piota-state-', f);

const damaged: Record<string, string> = {
  truncated: '{"schema":2,"data":{"slots":{"A":null,"B":nu',
  empty: '',
  garbage: '\u0000\u0007PK\u0003\u0004 not json at all',
  'wrong shape': '{"schema":2,"data":{"slots":"A and B"}}',
  'no envelope': '[1,2,3]',
};

describe('the state store', () => {
  it('keeps the previous generation on every save', async () => {
    await withDir(async (dir) => {
      const store = new StateStore(dir);
      await store.save(stateWith(updateIn('downloading')));
      await store.save(stateWith(updateIn('downloadComplete')));
      expect(JSON.parse(await readFile(store.path, 'utf8')).data.update.phase).toBe('downloadComplete');
      expect(JSON.parse(await readFile(store.previousPath, 'utf8')).data.update.phase).toBe('downloading');
    });
  });

  it.each(Object.keys(damaged))('%s state.json: falls back to the previous generation, moves the damaged file aside and says so', async (kind) => {
    await withDir(async (dir) => {
      const store = new StateStore(dir);
      await store.save(stateWith(updateIn('downloading')));
      await store.save(stateWith(updateIn('downloadComplete')));
      await writeFile(store.path, damaged[kind]);
      const { state, recovery } = await store.load(new Date('2026-11-29T12:00:00Z'));
      expect(state.update?.phase).toBe('downloading');
      expect(recovery).toMatchObject({ restoredFrom: 'previous', at: '2026-11-29T12:00:00.000Z' });
      expect(recovery!.reason).toContain(store.path);
      expect(state.recovery).toEqual(recovery);
      expect(await readFile(recovery!.movedTo!, 'utf8')).toBe(damaged[kind]);
    });
  });

  it('both generations damaged: rebuilds from nothing, and says so', async () => {
    await withDir(async (dir) => {
      const store = new StateStore(dir);
      await writeFile(store.path, damaged.truncated);
      await writeFile(store.previousPath, damaged.garbage);
      const { state, recovery } = await store.load();
      expect(state.update).toBeNull();
      expect(state.slots).toEqual({ A: null, B: null });
      expect(recovery?.restoredFrom).toBe('rebuilt');
      expect((await readdir(dir)).some((n) => n.startsWith('state.json.damaged-'))).toBe(true);
    });
  });

  it('a newer schema with a readable core is read, never refused', async () => {
    await withDir(async (dir) => {
      const store = new StateStore(dir);
      await writeFile(store.path, JSON.stringify({ schema: 99, data: { ...stateWith(updateIn('trial')), somethingNew: true } }));
      const { state, recovery } = await store.load();
      expect(recovery).toBeNull();
      expect(state.update?.phase).toBe('trial');
    });
  });

  it('only the previous generation (a power cut between the two renames of a save): used as it is', async () => {
    await withDir(async (dir) => {
      const store = new StateStore(dir);
      await store.save(stateWith(updateIn('verifying')));
      await store.save(stateWith(updateIn('rebooting')));
      await rm(store.path);
      const { state, recovery } = await store.load();
      expect(state.update?.phase).toBe('verifying');
      expect(recovery).toBeNull();
    });
  });

  it('piota status between the two renames of a save reads the previous generation, not "no update"', async () => {
    await withDir(async (dir) => {
      const store = new StateStore(dir);
      await store.save(stateWith(updateIn('downloading')));
      await store.save(stateWith(updateIn('downloadComplete')));
      await rm(store.path);
      expect((await store.read()).update?.phase).toBe('downloading');
    });
  });

  it('missing: an empty state', async () => {
    await withDir(async (dir) => {
      const { state, recovery } = await new StateStore(dir).load();
      expect(state.update).toBeNull();
      expect(recovery).toBeNull();
    });
  });

  it('persists the clock floor it is given (the floor decides when it may go down)', async () => {
    await withDir(async (dir) => {
      let floor = 1000;
      const store = new StateStore(dir, () => floor);
      const state = stateWith(null);
      await store.save(state);
      expect(JSON.parse(await readFile(store.path, 'utf8')).data.newestTimestamp).toBe(1000);
      floor = 500; // a synchronised clock showed the old floor was ahead
      await store.save(state);
      expect(JSON.parse(await readFile(store.path, 'utf8')).data.newestTimestamp).toBe(500);
    });
  });
});
