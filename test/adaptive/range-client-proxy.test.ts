import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createReadStream } from 'node:fs';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { createBundle } from '../../src/bundle/create.js';
import { generateKeyPair } from '../../src/bundle/keys.js';
import { verifyHeader } from '../../src/bundle/verifier.js';
import { tryAdaptiveDownload } from '../../src/adaptive/adaptive-download.js';
import { rangeClient } from '../../src/adaptive/range-client.js';
import { buildSlotIndex, saveSlotIndex } from '../../src/adaptive/slot-index.js';
import { slotIndexPath } from '../../src/adaptive/slot-index-builds.js';
import { DownloadError } from '../../src/download/errors.js';
import { openDownload } from '../../src/download/https-source.js';
import { downloadToSlot } from '../../src/agent/download-to-slot.js';
import { openPartitionForWrite, partitionSize } from '../../src/slots/index.js';
import { updateIn } from '../agent/fakes/ports.js';
import { startTestFileServer, type TestFileServer } from '../helpers/https-file-server.js';
import { startConnectProxy, type TestConnectProxy } from '../download/connect-proxy.js';
import { syntheticPair } from './synthetic.js';

// The ranges of an adaptive download go the way the full download goes: through the device's
// configured proxy (`download.proxy`) or the environment's, in a CONNECT tunnel, on kept-alive connections.
const quiet = pino({ level: 'silent' });
const pair = syntheticPair();
const keys = generateKeyPair();
let dir: string;
let server: TestFileServer;
let proxy: TestConnectProxy;
let file: Buffer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'piota-range-proxy-'));
  server = await startTestFileServer();
  proxy = await startConnectProxy();
  await writeFile(join(dir, 'r2.img'), pair.release2);
  await createBundle({
    out: join(dir, 'r2.piota'), version: '2', compatible: ['pi'], formatVersion: 2, chunkSize: 64 * 1024,
    payloads: [{ name: 'rootfs', file: join(dir, 'r2.img') }], signingKeys: [keys.privateKeyPem],
  });
  server.add('r2.piota', join(dir, 'r2.piota'));
  file = await readFile(join(dir, 'r2.piota'));
});
afterAll(async () => {
  await proxy.close();
  await server.close();
  await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  proxy.tunnels.length = 0;
  proxy.authorizations.length = 0;
  proxy.refuseWith = undefined;
  server.requests.length = 0;
});

const host = () => `${new URL(server.url('r2.piota')).hostname}:${server.port}`;

async function fetchSome(options: Parameters<typeof rangeClient>[0], count = 12): Promise<void> {
  const client = rangeClient(options);
  try {
    const ranges = Array.from({ length: count }, (_, i) => [i * 1000, i * 1000 + 777] as const);
    const got = await Promise.all(ranges.map(([s, e]) => client.fetch(s, e)));
    ranges.forEach(([s, e], i) => expect(got[i].equals(file.subarray(s, e))).toBe(true));
    expect(client.bytesFetched).toBe(count * 777);
  } finally {
    client.close();
  }
}

describe('Range requests through the download proxy', () => {
  it('with download.proxy set, every range goes through its tunnels, at most `connections` of them, kept alive', async () => {
    await fetchSome({ url: server.url('r2.piota'), ca: server.ca, proxy: proxy.url, connections: 3 });
    expect(proxy.tunnels.length).toBeGreaterThan(0);
    expect(proxy.tunnels.length).toBeLessThanOrEqual(3);
    expect(new Set(proxy.tunnels)).toEqual(new Set([host()]));
    expect(server.requests.filter((r) => r.range).length).toBe(12);
  });

  it('sends the proxy URL\'s credentials with each CONNECT', async () => {
    const u = new URL(proxy.url);
    u.username = 'pi';
    u.password = 's3cret';
    await fetchSome({ url: server.url('r2.piota'), ca: server.ca, proxy: u.toString(), connections: 1 }, 2);
    expect(proxy.authorizations[0]).toBe(`Basic ${Buffer.from('pi:s3cret').toString('base64')}`);
  });

  it('with no proxy setting, follows HTTPS_PROXY and NO_PROXY as the full download does', async () => {
    await fetchSome({ url: server.url('r2.piota'), ca: server.ca, env: { HTTPS_PROXY: proxy.url } }, 3);
    expect(proxy.tunnels.length).toBeGreaterThan(0);
    proxy.tunnels.length = 0;
    await fetchSome({ url: server.url('r2.piota'), ca: server.ca, env: { HTTPS_PROXY: proxy.url, NO_PROXY: new URL(server.url('r2.piota')).hostname } }, 3);
    expect(proxy.tunnels).toEqual([]);
  });

  it('null: never a proxy, whatever the environment says', async () => {
    await fetchSome({ url: server.url('r2.piota'), ca: server.ca, proxy: null, env: { HTTPS_PROXY: proxy.url } }, 3);
    expect(proxy.tunnels).toEqual([]);
  });

  it('a proxy that refuses the tunnel is the download\'s proxyError, naming the proxy', async () => {
    proxy.refuseWith = 407;
    const client = rangeClient({ url: server.url('r2.piota'), ca: server.ca, proxy: proxy.url });
    try {
      const err = await client.fetch(0, 100).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DownloadError);
      expect((err as DownloadError).code).toBe('proxyError');
      expect((err as Error).message).toContain('407');
    } finally {
      client.close();
    }
  });

  it('an adaptive install behind the proxy is adaptive (not the full download) and exact', async () => {
    const stateDir = join(dir, 'state');
    const running = join(dir, 'A');
    const target = join(dir, 'B');
    await writeFile(running, pair.release1);
    await writeFile(target, pair.release0);
    await saveSlotIndex(slotIndexPath(stateDir, 'A', 'rootfs'), await buildSlotIndex(running, pair.release1.length));
    const header = await verifyHeader(createReadStream(join(dir, 'r2.piota')), { trustedKeys: [keys.publicKeyPem] });
    await header.rest.return();
    const out = await open(target, 'r+');
    try {
      const stats = await tryAdaptiveDownload({
        url: server.url('r2.piota'), ca: server.ca, proxy: proxy.url, validator: server.etagOf('r2.piota'), header,
        runningPartitions: { rootfs: running }, targetPartitions: { rootfs: target }, runningSlot: 'A', targetSlot: 'B',
        stateDir, fromChunk: 0, logger: quiet,
        write: async (_p, offset, data) => void (await out.write(data, 0, data.length, offset)),
        afterChunk: async () => undefined,
      });
      expect(stats).not.toBeNull();
      expect(stats!.bytesFetched).toBeGreaterThan(0);
    } finally {
      await out.close();
    }
    expect((await readFile(target)).equals(pair.release2)).toBe(true);
    expect(proxy.tunnels.length).toBeGreaterThan(0);
    expect(proxy.tunnels.length).toBeLessThanOrEqual(4);
  });

  it('the daemon\'s download (downloadToSlot) with download.proxy set: the header and the ranges through the proxy, adaptive', async () => {
    const stateDir = join(dir, 'dispatch-state');
    const running = join(dir, 'dispatch-A');
    const target = join(dir, 'dispatch-B');
    await writeFile(running, pair.release1);
    await writeFile(target, pair.release0);
    await saveSlotIndex(slotIndexPath(stateDir, 'A', 'rootfs'), await buildSlotIndex(running, pair.release1.length));
    const u = updateIn('downloading', { fwPackageUri: server.url('r2.piota') });
    await downloadToSlot(u, {
      open: openDownload,
      storage: { partitionSize, openForWrite: (p) => openPartitionForWrite(p), hashFromMedium: async () => '' },
      trust: { trustedKeys: [keys.publicKeyPem], model: 'pi', securityVersion: 0 },
      targetPartitions: { rootfs: target },
      request: { ca: server.ca, proxy: proxy.url },
      logger: quiet,
      checkpoint: async () => undefined,
      progress: () => undefined,
      signal: new AbortController().signal,
      adaptive: { runningPartitions: { rootfs: running }, runningSlot: 'A', targetSlot: 'B', stateDir },
    });
    expect(u.method).toBe('adaptive');
    expect((await readFile(target)).subarray(0, pair.release2.length).equals(pair.release2)).toBe(true);
    // The first GET (the header) had one tunnel; the ranges needed more: they went through the proxy too.
    expect(proxy.tunnels.length).toBeGreaterThan(1);
    expect(new Set(proxy.tunnels)).toEqual(new Set([host()]));
  });
});
