import { describe, it, expect } from 'vitest';
import { mkdtemp, readdir, readFile, writeFile, rm, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { StateStore } from '../../src/agent/state-store.js';
import { validateDeviceState, type DeviceState, type Phase } from '../../src/agent/device-state.js';
import { PHASES } from '../../src/agent/workflow/spec.js';
import { packageVersion } from '../../src/cli/version.js';
import { stateWith, updateIn } from '../agent/fakes/ports.js';

/**
 * The state compatibility contract (docs/update-workflow.md, "State compatibility"), tested both ways:
 * this agent reads every earlier version's fixtures (and made-up newer files); each version's frozen
 * reader (test/compat/readers/) reads every later version's fixtures. Each version keeps fixtures of
 * what it writes in test/compat/state/<version>/; `PIOTA_WRITE_FIXTURES=1` rewrites the current one.
 */
const root = new URL('./state/', import.meta.url);
const current = packageVersion();

async function fixtureDirs(): Promise<string[]> {
  return (await readdir(root, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name);
}

async function fixtures(dir: string): Promise<{ name: string; text: string }[]> {
  const names = (await readdir(new URL(`${dir}/`, root))).filter((n) => n.endsWith('.json')).sort();
  return Promise.all(names.map(async (name) => ({ name: `${dir}/${name}`, text: await readFile(new URL(`${dir}/${name}`, root), 'utf8') })));
}

const newer = (a: string, b: string) => (a === 'future' ? true : b === 'future' ? false : a.localeCompare(b, undefined, { numeric: true }) > 0);

/** The states this version writes fixtures of: one per kind of moment a newer or older agent may meet. */
function referenceStates(): Record<string, DeviceState> {
  const bundle = { version: '1.0.1', securityVersion: 1, headerLength: 1234, totalBytes: 8389000, chunkCount: 2, payloads: [{ name: 'rootfs', imageSize: 8388608, imageSha256: 'b'.repeat(64) }] };
  const states: Record<string, DeviceState> = {
    idle: stateWith(null),
    downloading: stateWith(updateIn('downloading', { bundle, nextChunk: 1, bytesDownloaded: 4_200_000 })),
    'downloading-adaptive': stateWith(updateIn('downloading', { bundle, nextChunk: 1, bytesDownloaded: 4_200_000, method: 'adaptive', bytesFetched: 310_000, bytesReused: 3_900_000 })),
    rebooting: stateWith(updateIn('rebooting', { bundle, nextChunk: 2, bytesDownloaded: 8389000 })),
    'checking-boot': stateWith(updateIn('checkingBoot', { bundle, nextChunk: 2, bytesDownloaded: 8389000 })),
    trial: stateWith(updateIn('trial', { bundle, nextChunk: 2, bytesDownloaded: 8389000, trialStartedAt: 1764316170000 })),
    'apply-failed': stateWith(updateIn('applyFailed', { bundle, error: { code: 'trialFailed', message: 'the trial boot of slot B did not come up healthy; the board is back on slot A' } })),
    recovered: { ...stateWith(null), recovery: { at: '2026-11-29T12:00:00.000Z', reason: '/data/piota/state.json: not valid JSON (Unexpected end of JSON input)', restoredFrom: 'rebuilt', movedTo: '/data/piota/state.json.damaged-2026-11-29T12-00-00-000Z' } },
  };
  for (const s of Object.values(states)) s.newestTimestamp = 1764316150000;
  return states;
}

describe('state compatibility', () => {
  it(`the fixtures of ${current} are what this agent writes`, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'piota-compat-'));
    try {
      const written: Record<string, string> = {};
      for (const [name, state] of Object.entries(referenceStates())) {
        const store = new StateStore(join(dir, name), null, current);
        await store.save(state);
        written[`${name}.json`] = await readFile(store.path, 'utf8');
      }
      const target = new URL(`${current}/`, root);
      if (process.env.PIOTA_WRITE_FIXTURES === '1') {
        await mkdir(target, { recursive: true });
        for (const [name, text] of Object.entries(written)) await writeFile(new URL(name, target), text);
      }
      const kept = Object.fromEntries((await fixtures(current)).map((f) => [f.name.slice(current.length + 1), f.text]));
      expect(kept, `test/compat/state/${current}/ differs from what this agent writes: if the change is meant, follow the contract and run PIOTA_WRITE_FIXTURES=1`).toEqual(written);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('this agent reads every fixture of every version, earlier and newer, to a phase it knows', async () => {
    for (const dir of await fixtureDirs()) {
      for (const f of await fixtures(dir)) {
        const state = validateDeviceState(JSON.parse(f.text).data);
        if (state.update) expect(PHASES, f.name).toContain(state.update.phase);
      }
    }
  });

  it('each version\'s frozen reader reads every later version\'s fixtures to a phase it knows', async () => {
    const readers = (await readdir(new URL('./readers/', import.meta.url))).filter((n) => n.endsWith('.mjs'));
    expect(readers.length).toBeGreaterThan(0);
    for (const file of readers) {
      const reader = (await import(pathToFileURL(join(new URL('./readers/', import.meta.url).pathname, file)).href)) as { version: string; PHASES: string[]; readState(text: string): DeviceState };
      const later = (await fixtureDirs()).filter((d) => newer(d, reader.version));
      expect(later.length, `no fixtures newer than ${reader.version}`).toBeGreaterThan(0);
      for (const dir of later) {
        for (const f of await fixtures(dir)) {
          const state = reader.readState(f.text);
          if (state.update) expect(reader.PHASES, `${f.name} read by ${reader.version}`).toContain(state.update.phase);
        }
      }
    }
  });

  it(`the frozen ${current} reader is a faithful copy of this agent's rules`, async () => {
    const path = new URL(`./readers/${current}.mjs`, import.meta.url);
    const reader = (await import(path.href)) as { readState(text: string): DeviceState };
    for (const dir of await fixtureDirs()) {
      for (const f of await fixtures(dir)) {
        expect(reader.readState(f.text), f.name).toEqual(validateDeviceState(JSON.parse(f.text).data));
      }
    }
  });

  it('maps a newer phase by the status beside it: applying → checkingBoot, before applying → downloadFailed/unknownPhase', async () => {
    const [down, trial] = await fixtures('future');
    const d = validateDeviceState(JSON.parse(down.text).data);
    expect(d.update).toMatchObject({ phase: 'downloadFailed' satisfies Phase, error: { code: 'unknownPhase' } });
    const t = validateDeviceState(JSON.parse(trial.text).data);
    expect(t.update?.phase).toBe('checkingBoot');
  });

  it('keeps fields it does not know through a load and a save', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'piota-compat-'));
    try {
      const [, trial] = await fixtures('future');
      await writeFile(join(dir, 'state.json'), trial.text);
      const store = new StateStore(dir, null, current);
      const { state, recovery } = await store.load();
      expect(recovery).toBeNull();
      await store.save(state);
      const back = JSON.parse(await readFile(store.path, 'utf8'));
      expect(back.schema).toBe(2);
      expect(back.data.rollout).toEqual({ name: 'winter-release', wave: 2 });
      expect(back.data.update.reusedBytes).toBe(7000000);
      expect(back.data.update.bundle.blockIndex).toEqual({ offset: 1024, length: 1000 });
      expect(back.data.slots.B.deltaBase).toBe('1.0.0');
      expect(back.data.update.times.healthChecksStarted).toBe('2026-12-01T02:01:00.000Z');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
