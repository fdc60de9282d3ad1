import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readBundleFileHeader } from '../../src/bundle/inspect.js';
import { generateKeyPair } from '../../src/bundle/keys.js';
import { buildSlotIndexInBackground } from '../../src/adaptive/adaptive-download.js';
import { downloadToSlot, type DownloadDeps } from '../../src/agent/download-to-slot.js';
import type { UpdateRecord } from '../../src/agent/device-state.js';
import { openDownload } from '../../src/download/https-source.js';
import { openPartitionForWrite, partitionSize } from '../../src/slots/index.js';
import { silentLogger, updateIn } from '../agent/fakes/ports.js';
import type { TestFileServer } from '../helpers/https-file-server.js';
import { serveRelease2, type ServedRelease } from './served-release.js';
import { syntheticPair } from './synthetic.js';

/*
 * The daemon's download (downloadToSlot, with the real HTTPS stack and slot writer on files) given
 * the running slot: a format 2 bundle installs adaptively; a server without Range, or a device
 * without a slot index, gets the full download; tampered units are refused. A download pinned by
 * sha256 is never adaptive, and its pin covers the whole file (unit store and indexes included).
 */
const pair = syntheticPair();
const keys = generateKeyPair();
let dir: string;
let server: TestFileServer;
let fileSha256: string;
let fileSize: number;
let served: ServedRelease;

beforeAll(async () => {
  served = await serveRelease2('piota-dispatch-', pair, keys.privateKeyPem);
  ({ dir, server } = served);
  const file = await readFile(join(dir, 'r2.piota'));
  fileSha256 = createHash('sha256').update(file).digest('hex');
  fileSize = file.length;
});
afterAll(async () => {
  await served?.close();
});

async function device(name: string, index: boolean) {
  const running = join(dir, `${name}-A`);
  const target = join(dir, `${name}-B`);
  const stateDir = join(dir, `${name}-state`);
  await writeFile(running, pair.release1);
  await writeFile(target, pair.release0);
  if (index) await buildSlotIndexInBackground(stateDir, 'A', 'rootfs', running, pair.release2.length, 0, silentLogger);
  const saved: UpdateRecord[] = [];
  const deps: DownloadDeps = {
    open: openDownload,
    storage: { partitionSize, openForWrite: (p) => openPartitionForWrite(p), hashFromMedium: async () => '' },
    trust: { trustedKeys: [keys.publicKeyPem], model: 'pi', securityVersion: 0 },
    targetPartitions: { rootfs: target },
    request: { ca: server.ca, proxy: null },
    logger: silentLogger,
    checkpoint: async (u) => void saved.push(structuredClone(u)),
    progress: () => undefined,
    signal: new AbortController().signal,
    adaptive: { runningPartitions: { rootfs: running }, runningSlot: 'A', targetSlot: 'B', stateDir },
  };
  return { target, deps, saved };
}

const written = async (target: string) => (await readFile(target)).subarray(0, pair.release2.length).equals(pair.release2);

describe('downloadToSlot with a format 2 bundle', () => {
  it('installs adaptively when the running slot has an index: method adaptive, a fraction fetched', async () => {
    const d = await device('adaptive', true);
    const u = updateIn('downloading', { fwPackageUri: server.url('r2.piota') });
    await downloadToSlot(u, d.deps);
    expect(await written(d.target)).toBe(true);
    expect(u.method).toBe('adaptive');
    expect(u.bytesFetched!).toBeLessThan(u.bundle!.totalBytes / 4);
    expect(u.nextChunk).toBe(u.bundle!.chunkCount);
  });

  it('without a slot index: the full download (format 2 chunks, stopping before the unit store)', async () => {
    const d = await device('noindex', false);
    const u = updateIn('downloading', { fwPackageUri: server.url('r2.piota') });
    await downloadToSlot(u, d.deps);
    expect(await written(d.target)).toBe(true);
    expect(u.method).toBeUndefined();
  });

  it('a server that ignores Range: the full download', async () => {
    const d = await device('norange', true);
    const u = updateIn('downloading', { fwPackageUri: server.url('r2.piota') });
    server.faults.ignoreRange = true;
    try {
      await downloadToSlot(u, d.deps);
    } finally {
      server.faults.ignoreRange = false;
    }
    expect(await written(d.target)).toBe(true);
    expect(u.method).toBeUndefined();
  });
});

describe('an update that went adaptive and goes on in full after a restart', () => {
  it('keeps counting bytesFetched: what it had, plus the chunks the full download receives', async () => {
    const reference = await device('mixed-ref', false);
    const ref = updateIn('downloading', { fwPackageUri: server.url('r2.piota') });
    await downloadToSlot(ref, reference.deps);
    const { manifest } = await readBundleFileHeader(join(dir, 'r2.piota'));
    const k = Math.floor(manifest.chunks.length / 2);
    const at = manifest.chunks[k].bundleOffset;
    // As a power cut leaves it: chunks before k written adaptively; no slot index now (the full download resumes).
    const d = await device('mixed', false);
    const u = updateIn('downloading', { fwPackageUri: server.url('r2.piota'), bundle: ref.bundle, nextChunk: k, bytesDownloaded: at, method: 'adaptive', bytesFetched: 1000, bytesReused: 5000 });
    await downloadToSlot(u, d.deps);
    expect(u.nextChunk).toBe(manifest.chunks.length);
    expect(u.bytesFetched).toBe(1000 + manifest.chunksEnd - at);
    expect(u.bytesReused).toBe(5000);
    const imageAt = manifest.chunks[k].imageOffset;
    expect((await readFile(d.target)).subarray(imageAt, pair.release2.length).equals(pair.release2.subarray(imageAt))).toBe(true);
  });
});

describe('a download pinned by sha256, of a format 2 bundle', () => {
  it('installs: the whole file (chunks, unit store, indexes) is hashed and matches the pin; never adaptive', async () => {
    const d = await device('pinned', true);
    const u = updateIn('downloading', { fwPackageUri: server.url('r2.piota'), pinnedSha256: fileSha256 });
    await downloadToSlot(u, d.deps);
    expect(await written(d.target)).toBe(true);
    expect(u.method).toBeUndefined();
    expect(u.bundle!.totalBytes).toBe(fileSize);
    expect(u.bytesDownloaded).toBe(fileSize);
    expect(u.nextChunk).toBe(u.bundle!.chunkCount);
  });

  it('a wrong pin still fails sha256Mismatch, naming both hashes', async () => {
    const d = await device('wrongpin', true);
    const wrong = 'ab'.repeat(32);
    const u = updateIn('downloading', { fwPackageUri: server.url('r2.piota'), pinnedSha256: wrong });
    await expect(downloadToSlot(u, d.deps)).rejects.toMatchObject({ code: 'sha256Mismatch', message: expect.stringContaining(`has sha256 ${fileSha256}, but the request pinned ${wrong}`) });
  });

  it('a file cut short after the last chunk: refused, never a pin that covers less than the file', async () => {
    const d = await device('short', true);
    const u = updateIn('downloading', { fwPackageUri: server.url('r2.piota'), pinnedSha256: fileSha256 });
    server.faults.noContentLength = true;
    server.faults.cutAfterBytes = fileSize - 1000;
    try {
      await expect(downloadToSlot(u, d.deps)).rejects.toMatchObject({ code: expect.stringMatching(/^(truncated|networkError)$/) });
    } finally {
      server.faults.noContentLength = false;
      server.faults.cutAfterBytes = undefined;
    }
  });
});
