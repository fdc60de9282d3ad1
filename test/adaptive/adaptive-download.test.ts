import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReadStream } from 'node:fs';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import { generateKeyPair } from '../../src/bundle/keys.js';
import { verifyHeader } from '../../src/bundle/verifier.js';
import { buildSlotIndexInBackground, slotIndexPath, tryAdaptiveDownload, type AdaptiveContext } from '../../src/adaptive/adaptive-download.js';
import { loadSlotIndex } from '../../src/adaptive/slot-index.js';
import type { TestFileServer } from '../helpers/https-file-server.js';
import { serveRelease2, type ServedRelease } from './served-release.js';
import { syntheticPair } from './synthetic.js';

const pair = syntheticPair();
const keys = generateKeyPair();
let dir: string;
let server: TestFileServer;
let served: ServedRelease;

beforeAll(async () => {
  served = await serveRelease2('piota-adaptive-dl-', pair, keys.privateKeyPem);
  ({ dir, server } = served);
});
afterAll(async () => {
  await served?.close();
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
