import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReadStream } from 'node:fs';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { createBundle } from '../../src/bundle/create.js';
import { generateKeyPair } from '../../src/bundle/keys.js';
import { verifyHeader } from '../../src/bundle/verifier.js';
import { buildSlotIndexInBackground, slotIndexPath, tryAdaptiveDownload, type AdaptiveContext } from '../../src/adaptive/adaptive-download.js';
import { loadSlotIndex } from '../../src/adaptive/slot-index.js';
import { startTestFileServer, type TestFileServer } from '../helpers/https-file-server.js';
import { syntheticPair } from './synthetic.js';

const pair = syntheticPair();
const keys = generateKeyPair();
let dir: string;
let server: TestFileServer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'piota-adaptive-dl-'));
  server = await startTestFileServer();
  await writeFile(join(dir, 'r2.img'), pair.release2);
  await createBundle({
    out: join(dir, 'r2.piota'), version: '2', compatible: ['pi'], formatVersion: 2, chunkSize: 64 * 1024,
    payloads: [{ name: 'rootfs', file: join(dir, 'r2.img') }], signingKeys: [keys.privateKeyPem],
  });
  server.add('r2.piota', join(dir, 'r2.piota'));
});
afterAll(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

const quiet = pino({ level: 'silent' });

async function context(name: string): Promise<AdaptiveContext & { chunks: number[]; stateDir: string; target: string }> {
  const stateDir = join(dir, `${name}-state`);
  const running = join(dir, `${name}-A`);
  const target = join(dir, `${name}-B`);
  await writeFile(running, pair.release1);
  await writeFile(target, pair.release0);
  const header = await verifyHeader(createReadStream(join(dir, 'r2.piota')), { trustedKeys: [keys.publicKeyPem] });
  await header.rest.return();
  const out = await open(target, 'r+');
  const chunks: number[] = [];
  return {
    url: server.url('r2.piota'), ca: server.ca, validator: server.etagOf('r2.piota'), header,
    runningPartitions: { rootfs: running }, targetPartitions: { rootfs: target }, runningSlot: 'A', targetSlot: 'B',
    stateDir, fromChunk: 0, logger: quiet, chunks, target,
    write: async (_p, offset, data) => void (await out.write(data, 0, data.length, offset)),
    afterChunk: async (c) => void chunks.push(c),
  };
}

describe('the adaptive download the daemon runs', () => {
  it('without an index of the running slot: full download now (null), the index is built meanwhile, adaptive next time', async () => {
    const ctx = await context('first');
    expect(await tryAdaptiveDownload(ctx)).toBeNull();
    // The build started by that call, awaited here (the same job: one build per slot at a time).
    await buildSlotIndexInBackground(ctx.stateDir, 'A', 'rootfs', ctx.runningPartitions.rootfs, pair.release2.length, 0, quiet);
    expect(await loadSlotIndex(slotIndexPath(ctx.stateDir, 'A', 'rootfs'))).not.toBeNull();
    const stats = await tryAdaptiveDownload(ctx);
    expect(stats).not.toBeNull();
    expect(stats!.bytesReused).toBeGreaterThan(0);
    expect(stats!.bytesFetched).toBeLessThan(ctx.header.manifest.chunksEnd / 4);
    expect((await readFile(ctx.target)).subarray(0, pair.release2.length).equals(pair.release2)).toBe(true);
    expect(ctx.chunks).toEqual([...Array(ctx.header.manifest.chunks.length).keys()]);
  });

  it('a server that ignores Range: null (the full download runs), nothing written', async () => {
    const ctx = await context('norange');
    await buildSlotIndexInBackground(ctx.stateDir, 'A', 'rootfs', ctx.runningPartitions.rootfs, pair.release2.length, 0, quiet);
    server.faults.ignoreRange = true;
    try {
      expect(await tryAdaptiveDownload(ctx)).toBeNull();
    } finally {
      server.faults.ignoreRange = false;
    }
    expect(ctx.chunks).toEqual([]);
  });

  it('reuse that does not pay (a running slot with nothing in common): null', async () => {
    const ctx = await context('nothing');
    await writeFile(ctx.runningPartitions.rootfs, Buffer.alloc(pair.release1.length, 0x11));
    await writeFile(ctx.targetPartitions.rootfs, Buffer.alloc(pair.release1.length, 0x22));
    await buildSlotIndexInBackground(ctx.stateDir, 'A', 'rootfs', ctx.runningPartitions.rootfs, pair.release2.length, 0, quiet);
    expect(await tryAdaptiveDownload({ ...ctx, maxShare: 0.3 })).toBeNull();
    expect(ctx.chunks).toEqual([]);
  });
});
