import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBundle } from '../../src/bundle/create.js';
import { readBundleFileHeader } from '../../src/bundle/inspect.js';
import { generateKeyPair } from '../../src/bundle/keys.js';
import { BundleStream, FIRST_REQUEST_BYTES } from '../../src/agent/bundle-stream.js';
import { downloadToSlot } from '../../src/agent/download-to-slot.js';
import type { UpdateRecord } from '../../src/agent/device-state.js';
import { openDownload } from '../../src/download/https-source.js';
import { hashPartition, openPartitionForWrite, partitionSize } from '../../src/slots/index.js';
import { silentLogger, updateIn } from './fakes/ports.js';
import { startTestFileServer, type TestFileServer } from '../helpers/https-file-server.js';

/*
 * Which bytes a bundle download asks the server for (docs/download.md): the header first, then
 * exactly the chunks; a format 2 bundle's unit store is never sent to a full install; a header
 * longer than the first request is completed from its preamble; a server that ignores Range is
 * read in one response; a file that changes between the requests starts the download over.
 */
const keys = generateKeyPair();
const image = randomBytes(600 * 1024 + 123);
let dir: string;
let server: TestFileServer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'piota-bundle-stream-'));
  server = await startTestFileServer();
  await writeFile(join(dir, 'img'), image);
  for (const [name, chunkSize, formatVersion] of [['f2.piota', 64 * 1024, 2], ['long-header.piota', 4096, 1]] as const) {
    // A long list of compatible models makes a manifest longer than the first request.
    await createBundle({
      out: join(dir, name), version: '2', compatible: name === 'f2.piota' ? ['pi'] : ['pi', ...Array.from({ length: 1500 }, (_, i) => `model-${i}-${'x'.repeat(50)}`)],
      formatVersion, chunkSize, payloads: [{ name: 'rootfs', file: join(dir, 'img') }], signingKeys: [keys.privateKeyPem],
    });
    server.add(name, join(dir, name));
  }
});
afterAll(async () => {
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

async function install(name: string): Promise<UpdateRecord> {
  const slot = join(dir, `slot-${name}`);
  await writeFile(slot, '');
  await truncate(slot, 1024 * 1024);
  const update = updateIn('downloading', { fwPackageUri: server.url(name), nextChunk: 0, bytesDownloaded: 0, bundle: null });
  await downloadToSlot(update, {
    open: openDownload,
    storage: { partitionSize, openForWrite: (p) => openPartitionForWrite(p), hashFromMedium: hashPartition },
    trust: { trustedKeys: [keys.publicKeyPem], model: 'pi', securityVersion: 0 },
    targetPartitions: { rootfs: slot },
    request: { ca: server.ca, proxy: null },
    logger: silentLogger,
    checkpoint: async () => undefined,
    progress: () => undefined,
    signal: AbortSignal.timeout(60_000),
  });
  expect(await hashPartition(slot, image.length)).toBe(createHash('sha256').update(image).digest('hex'));
  return update;
}

const rangesOf = (name: string) => server.requests.filter((r) => r.path === name).map((r) => r.range);

describe('the bytes a bundle download asks for', () => {
  it('a full install of a format 2 bundle: the header, then exactly the chunks, never the unit store', async () => {
    const { manifest, fileSize } = await readBundleFileHeader(join(dir, 'f2.piota'));
    expect(fileSize).toBeGreaterThan(manifest.chunksEnd + 100_000); // the unit store is big
    const before = rangesOf('f2.piota').length;
    await install('f2.piota');
    expect(rangesOf('f2.piota').slice(before)).toEqual([`bytes=0-${FIRST_REQUEST_BYTES - 1}`, `bytes=${FIRST_REQUEST_BYTES}-${manifest.chunksEnd - 1}`]);
    const ifRange = server.requests.filter((r) => r.path === 'f2.piota').at(-1)?.ifRange;
    expect(ifRange).toBe(server.etagOf('f2.piota'));
  });

  it('a header longer than the first request: its rest is asked for exactly, from the preamble', async () => {
    const { manifest } = await readBundleFileHeader(join(dir, 'long-header.piota'));
    const headerEnd = manifest.chunks[0].bundleOffset;
    expect(headerEnd).toBeGreaterThan(FIRST_REQUEST_BYTES);
    const before = rangesOf('long-header.piota').length;
    await install('long-header.piota');
    expect(rangesOf('long-header.piota').slice(before)).toEqual([
      `bytes=0-${FIRST_REQUEST_BYTES - 1}`,
      `bytes=${FIRST_REQUEST_BYTES}-${headerEnd - 1}`,
      `bytes=${headerEnd}-${manifest.chunksEnd - 1}`,
    ]);
  });

  it('a server that ignores Range: one response, read up to the last chunk', async () => {
    server.faults.ignoreRange = true;
    try {
      const before = rangesOf('f2.piota').length;
      await install('f2.piota');
      expect(rangesOf('f2.piota').slice(before)).toHaveLength(1);
    } finally {
      server.faults.ignoreRange = undefined;
    }
  });

  it('the file replaced between the header and the chunks: fileChanged (the download starts over), never two files spliced', async () => {
    const other = join(dir, 'other.piota');
    await writeFile(other, await readFile(join(dir, 'f2.piota')));
    // Same bytes, another ETag (the helper's ETag is of the path): what a re-upload looks like.
    server.faults.replaceAfter = { name: 'f2.piota', requests: 1, path: other };
    try {
      await expect(install('f2.piota')).rejects.toMatchObject({ code: 'fileChanged', transient: true });
    } finally {
      server.faults.replaceAfter = undefined;
      server.add('f2.piota', join(dir, 'f2.piota'));
    }
  });

  it('reads across requests up to endAt, stops at the file\'s end, and reads nothing once destroyed', async () => {
    const file = await readFile(join(dir, 'f2.piota'));
    const stream = new BundleStream(openDownload, { url: server.url('f2.piota'), ca: server.ca, proxy: null }, FIRST_REQUEST_BYTES);
    await stream.start();
    const into = Buffer.alloc(FIRST_REQUEST_BYTES + 1000);
    // Past the first response: the rest comes from a second request, byte for byte.
    expect(await stream.readInto(into)).toBe(into.length);
    expect(into.equals(file.subarray(0, into.length))).toBe(true);
    // endAt within the next read: the read stops there.
    stream.endAt(into.length + 10);
    expect(await stream.readInto(Buffer.alloc(100))).toBe(10);
    expect(await stream.readInto(Buffer.alloc(100))).toBe(0);

    const whole = new BundleStream(openDownload, { url: server.url('f2.piota'), ca: server.ca, proxy: null }, FIRST_REQUEST_BYTES);
    await whole.start();
    const all = Buffer.alloc(file.length + 4096);
    expect(await whole.readInto(all)).toBe(file.length);
    expect(all.subarray(0, file.length).equals(file)).toBe(true);

    const dropped = new BundleStream(openDownload, { url: server.url('f2.piota'), ca: server.ca, proxy: null }, FIRST_REQUEST_BYTES);
    await dropped.start();
    expect(await dropped.readInto(Buffer.alloc(100))).toBe(100);
    dropped.destroy();
    const before = server.requests.length;
    expect(await dropped.readInto(Buffer.alloc(100))).toBe(0);
    expect(server.requests.length).toBe(before);
  });
});
