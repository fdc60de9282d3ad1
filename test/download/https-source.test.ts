import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDownload, DownloadError } from '../../src/download/https-source.js';
import { startTestFileServer, type TestFileServer } from '../helpers/https-file-server.js';

let server: TestFileServer;
const content = randomBytes(300_000);

async function collect(body: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of body) parts.push(c);
  return Buffer.concat(parts);
}

beforeAll(async () => {
  server = await startTestFileServer();
  const dir = await mkdtemp(join(tmpdir(), 'piota-dl-'));
  await writeFile(join(dir, 'f.bin'), content);
  server.add('f.bin', join(dir, 'f.bin'));
});
afterAll(() => server.close());

describe('openDownload', () => {
  it('streams a whole file over HTTPS with a private CA', async () => {
    const r = await openDownload({ url: server.url('f.bin'), ca: server.ca });
    expect(r.totalSize).toBe(content.length);
    const got = await collect(r.body);
    expect(createHash('sha256').update(got).digest('hex')).toBe(createHash('sha256').update(content).digest('hex'));
  });

  it('resumes with a Range request', async () => {
    const r = await openDownload({ url: server.url('f.bin'), ca: server.ca, start: 123_456 });
    expect(r.totalSize).toBe(content.length);
    expect((await collect(r.body)).equals(content.subarray(123_456))).toBe(true);
    expect(server.requests.at(-1)?.range).toBe('bytes=123456-');
  });

  it('skips to the offset itself when the server ignores Range', async () => {
    server.faults.ignoreRange = true;
    try {
      const r = await openDownload({ url: server.url('f.bin'), ca: server.ca, start: 1000 });
      expect((await collect(r.body)).equals(content.subarray(1000))).toBe(true);
    } finally {
      server.faults.ignoreRange = false;
    }
  });

  it('refuses a server whose certificate it does not trust', async () => {
    const err = await openDownload({ url: server.url('f.bin') }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DownloadError);
    expect((err as DownloadError).transient).toBe(false);
  });

  it('names HTTP errors and says which are worth retrying', async () => {
    const missing = await openDownload({ url: server.url('nope'), ca: server.ca }).catch((e: unknown) => e);
    expect(missing).toMatchObject({ code: 'httpError', transient: false });
    expect((missing as Error).message).toContain('HTTP 404');
    server.faults.failNext = { count: 1, status: 503 };
    const busy = await openDownload({ url: server.url('f.bin'), ca: server.ca }).catch((e: unknown) => e);
    expect(busy).toMatchObject({ code: 'httpError', transient: true });
  });

  it('refuses anything but https', async () => {
    await expect(openDownload({ url: 'http://localhost/x' })).rejects.toMatchObject({ code: 'notHttps' });
  });

  it('reports a connection cut in the middle as an error of the stream', async () => {
    server.faults.cutAfterBytes = 200_000;
    const r = await openDownload({ url: server.url('f.bin'), ca: server.ca });
    await expect(collect(r.body)).rejects.toMatchObject({ code: 'networkError', transient: true });
  });
});
