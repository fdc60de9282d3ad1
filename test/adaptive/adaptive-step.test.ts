import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReadStream } from 'node:fs';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import { generateKeyPair } from '../../src/bundle/keys.js';
import { verifyHeader, type VerifiedHeader } from '../../src/bundle/verifier.js';
import { buildSlotIndexInBackground } from '../../src/adaptive/adaptive-download.js';
import { downloadAdaptively, type AdaptiveStepDeps } from '../../src/agent/adaptive-step.js';
import type { UpdateRecord } from '../../src/agent/device-state.js';
import type { SlotWriter } from '../../src/agent/ports.js';
import { updateIn } from '../agent/fakes/ports.js';
import type { TestFileServer } from '../helpers/https-file-server.js';
import { serveRelease2, type ServedRelease } from './served-release.js';
import { syntheticPair } from './synthetic.js';

const pair = syntheticPair();
const keys = generateKeyPair();
const quiet = pino({ level: 'silent' });
let dir: string;
let server: TestFileServer;
let header: VerifiedHeader;
let served: ServedRelease;

beforeAll(async () => {
  served = await serveRelease2('piota-adaptive-step-', pair, keys.privateKeyPem);
  ({ dir, server } = served);
  header = await verifyHeader(createReadStream(join(dir, 'r2.piota')), { trustedKeys: [keys.publicKeyPem] });
  await header.rest.return();
});
afterAll(async () => {
  await served?.close();
});

async function device(name: string) {
  const running = join(dir, `${name}-A`);
  const target = join(dir, `${name}-B`);
  const stateDir = join(dir, `${name}-state`);
  await writeFile(running, pair.release1);
  await writeFile(target, pair.release0);
  await buildSlotIndexInBackground(stateDir, 'A', 'rootfs', running, pair.release2.length, 0, quiet);
  const fh = await open(target, 'r+');
  const writer: SlotWriter = {
    size: async () => pair.release0.length,
    write: async (offset: number, data: Uint8Array) => void (await fh.write(data, 0, data.length, offset)),
    sync: () => fh.sync(),
    close: () => fh.close(),
  } as unknown as SlotWriter;
  const persisted: UpdateRecord[] = [];
  const controller = new AbortController();
  const deps: AdaptiveStepDeps = {
    adaptive: { runningPartitions: { rootfs: running }, runningSlot: 'A', targetSlot: 'B', stateDir },
    targetPartitions: { rootfs: target }, ca: server.ca, request: { proxy: null }, logger: quiet,
    checkpoint: async (u) => void persisted.push(structuredClone(u)),
    progress: () => undefined, signal: controller.signal, checkpointIntervalMs: 0, onCommit: () => undefined,
  };
  return { target, writers: new Map([['rootfs', writer]]), deps, persisted, controller, close: () => fh.close() };
}

const update = () => updateIn('downloading', { fwPackageUri: server.url('r2.piota') });

describe('the download step into adaptive updates', () => {
  it('writes every chunk, says method adaptive, and counts fetched and reused bytes', async () => {
    const d = await device('plain');
    const u = update();
    expect(await downloadAdaptively(u, header, server.etagOf('r2.piota'), d.writers, d.deps)).toBe(true);
    await d.close();
    expect(u.method).toBe('adaptive');
    expect(u.nextChunk).toBe(header.manifest.chunks.length);
    expect(u.bytesDownloaded).toBe(header.bundleSize);
    expect(u.bytesFetched).toBeGreaterThan(0);
    expect(u.bytesFetched!).toBeLessThan(header.manifest.chunksEnd / 4);
    expect(u.bytesReused).toBeGreaterThan(0);
    expect((await readFile(d.target)).subarray(0, pair.release2.length).equals(pair.release2)).toBe(true);
  });

  it('a power cut (the step stopped mid-way) loses at most one chunk, and the restart finishes it exactly', async () => {
    const d = await device('cut');
    const u = update();
    let written = 0;
    d.deps.progress = () => {
      if (++written === 20) d.controller.abort(new Error('power cut'));
    };
    await expect(downloadAdaptively(u, header, server.etagOf('r2.piota'), d.writers, d.deps)).rejects.toThrow();
    const saved = d.persisted[d.persisted.length - 1];
    expect(written - saved.nextChunk).toBeLessThanOrEqual(1);
    // The restart: a new process with the persisted record.
    const again = structuredClone(saved);
    d.deps.signal = new AbortController().signal;
    d.deps.progress = () => undefined;
    expect(await downloadAdaptively(again, header, server.etagOf('r2.piota'), d.writers, d.deps)).toBe(true);
    await d.close();
    expect((await readFile(d.target)).subarray(0, pair.release2.length).equals(pair.release2)).toBe(true);
  });
});
