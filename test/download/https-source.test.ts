import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, utimes, writeFile } from 'node:fs/promises';
import { rootCertificates } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDownload, DownloadError } from '../../src/download/https-source.js';
import { DownloadAgent } from '../../src/download/download-agent.js';
import { startTestFileServer, type TestFileServer } from '../helpers/https-file-server.js';

let server: TestFileServer;
let dir: string;
const content = randomBytes(300_000);
// The same size, other bytes: a file replaced on the server in place.
const replacement = randomBytes(300_000);

async function collect(body: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of body) parts.push(c);
  return Buffer.concat(parts);
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  server = await startTestFileServer();
  dir = await mkdtemp(join(tmpdir(), 'piota-dl-'));
  await writeFile(join(dir, 'f.bin'), content);
  await writeFile(join(dir, 'new.bin'), replacement);
  // Last-Modified has whole seconds: the replacement must differ in them to be told apart by date.
  await utimes(join(dir, 'f.bin'), new Date('2026-01-01T00:00:00Z'), new Date('2026-01-01T00:00:00Z'));
  await utimes(join(dir, 'new.bin'), new Date('2026-02-01T00:00:00Z'), new Date('2026-02-01T00:00:00Z'));
  server.add('f.bin', join(dir, 'f.bin'));
});
afterAll(() => server.close());
afterEach(() => {
  for (const key of Object.keys(server.faults)) delete server.faults[key as keyof typeof server.faults];
  server.add('f.bin', join(dir, 'f.bin'));
});

describe('openDownload', () => {
  it('streams a whole file over HTTPS with a private CA', async () => {
    const r = await openDownload({ url: server.url('f.bin'), ca: server.ca });
    expect(r.totalSize).toBe(content.length);
    expect(r.restartedFromZero).toBe(false);
    expect(sha(await collect(r.body))).toBe(sha(content));
  });

  it('resumes with a Range request', async () => {
    const r = await openDownload({ url: server.url('f.bin'), ca: server.ca, start: 123_456 });
    expect(r.totalSize).toBe(content.length);
    expect((await collect(r.body)).equals(content.subarray(123_456))).toBe(true);
    expect(server.requests.at(-1)?.range).toBe('bytes=123456-');
  });

  it('skips to the offset itself when the server ignores Range', async () => {
    server.faults.ignoreRange = true;
    const r = await openDownload({ url: server.url('f.bin'), ca: server.ca, start: 1000 });
    expect(r.restartedFromZero).toBe(false);
    expect((await collect(r.body)).equals(content.subarray(1000))).toBe(true);
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
    await expect(openDownload({ url: 'http://localhost/x' })).rejects.toMatchObject({ code: 'notHttps', transient: false });
  });

  it('refuses a redirect to http:// at once, as a permanent notHttps', async () => {
    server.faults.redirectNext = { count: 1, location: `http://127.0.0.1:${server.port}/f.bin` };
    const before = server.requests.length;
    const err = await openDownload({ url: server.url('f.bin'), ca: server.ca }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DownloadError);
    expect(err).toMatchObject({ code: 'notHttps', transient: false });
    expect((err as Error).message).toContain(`http://127.0.0.1:${server.port}/f.bin`);
    expect(server.requests.length - before).toBe(1); // nothing was asked over plain http
  });

  it('follows a redirect to https', async () => {
    server.faults.redirectNext = { count: 1, location: server.url('f.bin') };
    const r = await openDownload({ url: server.url('moved.bin'), ca: server.ca });
    expect(sha(await collect(r.body))).toBe(sha(content));
  });

  it('gives up on a redirect loop as a permanent error', async () => {
    server.faults.redirectNext = { count: 10, location: server.url('f.bin') };
    const err = await openDownload({ url: server.url('f.bin'), ca: server.ca }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'tooManyRedirects', transient: false });
  });

  it('reports a connection cut in the middle as an error of the stream', async () => {
    server.faults.cutAfterBytes = 200_000;
    const r = await openDownload({ url: server.url('f.bin'), ca: server.ca });
    await expect(collect(r.body)).rejects.toMatchObject({ code: 'networkError', transient: true });
  });
});

describe('a Content-Length that lies', () => {
  it('declared longer than sent, then closed: a transient networkError that says how short', async () => {
    server.faults.contentLengthDelta = 5000;
    const r = await openDownload({ url: server.url('f.bin'), ca: server.ca });
    expect(r.totalSize).toBe(content.length + 5000);
    const err = await collect(r.body).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'networkError', transient: true });
    expect((err as Error).message).toContain(`after ${content.length} of ${content.length + 5000} bytes`);
  });

  it('declared shorter than sent: the body stops at the declared length, never more', async () => {
    server.faults.contentLengthDelta = -5000;
    const r = await openDownload({ url: server.url('f.bin'), ca: server.ca });
    expect(r.totalSize).toBe(content.length - 5000);
    expect((await collect(r.body)).equals(content.subarray(0, content.length - 5000))).toBe(true);
  });

  it('declared shorter than the size the caller knows: fileChanged, before a byte is read', async () => {
    server.faults.contentLengthDelta = -5000;
    const err = await openDownload({ url: server.url('f.bin'), ca: server.ca, expectedTotal: content.length }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'fileChanged', transient: true });
    expect((err as Error).message).toContain(`${content.length - 5000} bytes, not ${content.length}`);
  });
});

describe('If-Range: a file replaced on the server during a resume', () => {
  it('gives the strong ETag as the validator, else Last-Modified, never a weak ETag', async () => {
    const strong = await openDownload({ url: server.url('f.bin'), ca: server.ca });
    strong.destroy();
    expect(strong.validator).toBe(server.etagOf('f.bin'));
    server.faults.weakEtag = true;
    const weak = await openDownload({ url: server.url('f.bin'), ca: server.ca });
    weak.destroy();
    expect(weak.validator).toBe('Thu, 01 Jan 2026 00:00:00 GMT');
    server.faults.noLastModified = true;
    const none = await openDownload({ url: server.url('f.bin'), ca: server.ca });
    none.destroy();
    expect(none.validator).toBeNull();
  });

  it('resumes (206) while the file is the same', async () => {
    const first = await openDownload({ url: server.url('f.bin'), ca: server.ca });
    first.destroy();
    const r = await openDownload({ url: server.url('f.bin'), ca: server.ca, start: 100_000, ifRange: first.validator!, expectedTotal: content.length });
    expect(server.requests.at(-1)).toMatchObject({ range: 'bytes=100000-', ifRange: first.validator });
    expect(r.restartedFromZero).toBe(false);
    expect((await collect(r.body)).equals(content.subarray(100_000))).toBe(true);
  });

  for (const by of ['ETag', 'Last-Modified'] as const) {
    it(`restarts from byte 0 of the new file when it changed (by ${by}), skipping nothing`, async () => {
      if (by === 'Last-Modified') server.faults.noEtag = true;
      server.faults.replaceAfter = { name: 'f.bin', requests: 1, path: join(dir, 'new.bin') };
      const first = await openDownload({ url: server.url('f.bin'), ca: server.ca });
      const head = await first.body[Symbol.asyncIterator]().next();
      first.destroy();
      expect((head.value as Buffer).equals(content.subarray(0, (head.value as Buffer).length))).toBe(true);
      const r = await openDownload({ url: server.url('f.bin'), ca: server.ca, start: 100_000, ifRange: first.validator!, expectedTotal: content.length });
      expect(r.restartedFromZero).toBe(true);
      expect(r.validator).not.toBe(first.validator);
      expect(r.totalSize).toBe(replacement.length);
      expect(sha(await collect(r.body))).toBe(sha(replacement));
    });
  }

  it('a server that honours Range but not If-Range: its new ETag on the 206 makes it fileChanged', async () => {
    server.faults.ignoreIfRange = true;
    const first = await openDownload({ url: server.url('f.bin'), ca: server.ca });
    first.destroy();
    server.add('f.bin', join(dir, 'new.bin'));
    const err = await openDownload({ url: server.url('f.bin'), ca: server.ca, start: 100_000, ifRange: first.validator! }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'fileChanged', transient: true });
  });

  it('a server that ignores Range: with the same validator, skips to the offset (the file did not change)', async () => {
    const first = await openDownload({ url: server.url('f.bin'), ca: server.ca });
    first.destroy();
    server.faults.ignoreRange = true;
    const r = await openDownload({ url: server.url('f.bin'), ca: server.ca, start: 1000, ifRange: first.validator! });
    expect(r.restartedFromZero).toBe(false);
    expect((await collect(r.body)).equals(content.subarray(1000))).toBe(true);
  });

  it('a 206 whose total differs from the expected total is fileChanged', async () => {
    const err = await openDownload({ url: server.url('f.bin'), ca: server.ca, start: 1000, expectedTotal: content.length + 1 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'fileChanged', transient: true });
    expect((err as Error).message).toContain(`now has ${content.length} bytes, not ${content.length + 1}`);
  });

  it('a resume past the end of the file on the server (HTTP 416) is fileChanged', async () => {
    const err = await openDownload({ url: server.url('f.bin'), ca: server.ca, start: content.length + 10 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'fileChanged', transient: true });
    expect((err as Error).message).toContain(`shorter than byte ${content.length + 10} (HTTP 416, Content-Range 'bytes */${content.length}')`);
  });

  it('refuses bad options with a message that names them', async () => {
    await expect(openDownload({ url: server.url('f.bin'), start: -1 })).rejects.toThrow(/start must be a whole number >= 0, got -1/);
    await expect(openDownload({ url: server.url('f.bin'), ifRange: '"a"\r\nX: y', start: 1 })).rejects.toThrow(/ifRange/);
    await expect(openDownload({ url: server.url('f.bin'), minSpeed: { bytesPerSecond: 0, windowMs: 1000 } })).rejects.toThrow(/minSpeed.bytesPerSecond/);
  });
});

describe('TLS: trust and names', () => {
  let other: TestFileServer;
  let mismatch: TestFileServer;
  beforeAll(async () => {
    // Each test server has its own CA: `other` is signed by a CA the downloads below do not trust.
    other = await startTestFileServer();
    other.add('f.bin', join(dir, 'f.bin'));
    // Listening on 127.0.0.2, a name its certificate (localhost, 127.0.0.1, ::1) does not carry.
    mismatch = await startTestFileServer({ host: '127.0.0.2', tlsDir: server.tlsDir });
    mismatch.add('f.bin', join(dir, 'f.bin'));
  });
  afterAll(async () => {
    await other.close();
    await mismatch.close();
  });

  it('an extra CA is trusted besides the system roots, not instead of them', async () => {
    const agent = new DownloadAgent({ extraCa: server.ca, connectTimeoutMs: 1000 });
    const ca = agent.options.ca as string[];
    expect(ca).toEqual(expect.arrayContaining([...rootCertificates]));
    expect(ca).toContain(server.ca);
    expect(ca.length).toBe(rootCertificates.length + 1);
    // The server it signed works, and the system roots stay in force for the rest of the world.
    const r = await openDownload({ url: server.url('f.bin'), ca: server.ca });
    expect(sha(await collect(r.body))).toBe(sha(content));
  });

  it('a server signed by another CA is refused, permanently, with the cause named', async () => {
    const err = await openDownload({ url: other.url('f.bin'), ca: server.ca }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'tlsError', transient: false });
    expect((err as Error).message).toMatch(/not signed by a trusted CA/);
    const none = await openDownload({ url: other.url('f.bin') }).catch((e: unknown) => e);
    expect(none).toMatchObject({ code: 'tlsError', transient: false });
  });

  it('a certificate for another name is refused, permanently, with the cause named', async () => {
    const err = await openDownload({ url: mismatch.url('f.bin'), ca: mismatch.ca }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'tlsError', transient: false });
    expect((err as Error).message).toMatch(/not for that name/);
    expect((err as Error).message).toContain('127.0.0.2');
  });

  it('a downloadCaFile without a certificate is refused with a message that says so', async () => {
    await expect(openDownload({ url: server.url('f.bin'), ca: 'not a pem' })).rejects.toMatchObject({ code: 'tlsError', message: expect.stringMatching(/holds no PEM certificate/) });
  });
});
