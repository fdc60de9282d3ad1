import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import { ensureCertificates } from '../../src/hub-emulator/certificates.js';
import { httpsGet } from '../../src/download/http1-client.js';
import { openDownload } from '../../src/download/https-source.js';

// A raw TLS server that answers each connection with exactly the bytes a case writes: the framings
// node's https server never sends by itself (a body ended by the connection's close, 1xx responses,
// odd chunk sizes, broken heads), each written in small pieces so that reads cross them.
type Answer = (socket: TLSSocket) => void;
let server: Server;
let ca: string;
let answer: Answer = (s) => s.end();
const body = randomBytes(1_000_003);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  const certs = await ensureCertificates(await mkdtemp(join(tmpdir(), 'piota-http1-')), 'localhost');
  ca = certs.caPem;
  server = createServer({ key: certs.serverKeyPem, cert: certs.serverCertPem }, (socket) => {
    let head = '';
    const onData = (d: Buffer) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      answer(socket);
    };
    socket.on('data', onData);
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
});
afterAll(() => server.close());

const url = () => new URL(`https://localhost:${(server.address() as { port: number }).port}/f`);
const get = () => httpsGet(url(), { 'Accept-Encoding': 'identity' }, { extraCa: ca, timeoutMs: 5000, proxy: null });

/** Writes `data` in pieces of `size` bytes, each in its own TLS record. */
async function writeInPieces(socket: TLSSocket, data: Buffer, size: number): Promise<void> {
  for (let at = 0; at < data.length; at += size) {
    if (!socket.write(data.subarray(at, at + size))) await new Promise((r) => socket.once('drain', r));
  }
}

function chunked(data: Buffer, sizes: number[]): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (let i = 0; at < data.length; i++) {
    const n = Math.min(sizes[i % sizes.length], data.length - at);
    parts.push(Buffer.from(`${n.toString(16)};ext=1\r\n`), data.subarray(at, at + n), Buffer.from('\r\n'));
    at += n;
  }
  parts.push(Buffer.from('0\r\nX-Trailer: yes\r\n\r\n'));
  return Buffer.concat(parts);
}

/** Reads the whole body into buffers of `size` bytes, checking each read fills its buffer until the end. */
async function readAll(read: (into: Buffer) => Promise<number>, size: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (;;) {
    const into = Buffer.alloc(size);
    const n = await read(into);
    parts.push(into.subarray(0, n));
    if (n < size) return Buffer.concat(parts);
  }
}

describe('httpsGet: the HTTP/1.1 a download needs, read into the caller buffers', () => {
  it('Content-Length: fills each buffer whole across TLS records, and ends exactly at the length', async () => {
    answer = (s) => {
      s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`);
      // Bytes past the declared length are not the body.
      void writeInPieces(s, Buffer.concat([body, Buffer.from('garbage after the body')]), 7000).then(() => s.end());
    };
    for (const size of [7, 4096, 300_001, 4 * 1024 * 1024]) {
      const r = await get();
      expect(r.status).toBe(200);
      expect(sha(await readAll((into) => r.body.readInto(into), size))).toBe(sha(body));
      r.body.destroy();
    }
  });

  it('chunked: decodes chunk sizes, extensions and trailers, for any buffer size', async () => {
    const wire = chunked(body, [1, 5000, 70_000, 3]);
    answer = (s) => {
      s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n');
      void writeInPieces(s, wire, 1337).then(() => s.end());
    };
    for (const size of [3, 65_536, 2 * 1024 * 1024]) {
      const r = await get();
      expect(sha(await readAll((into) => r.body.readInto(into), size))).toBe(sha(body));
      r.body.destroy();
    }
  });

  it('a chunked body with a broken size line is badResponse, naming the line', async () => {
    answer = (s) => s.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n');
    const r = await get();
    await expect(r.body.readInto(Buffer.alloc(100))).rejects.toMatchObject({ code: 'badResponse', message: expect.stringContaining('"zz"') });
  });

  it('no length and no chunking: the body ends with the connection', async () => {
    answer = (s) => {
      s.write('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n');
      void writeInPieces(s, body, 16_384).then(() => s.end());
    };
    const r = await get();
    expect(sha(await readAll((into) => r.body.readInto(into), 100_000))).toBe(sha(body));
  });

  it('skips 1xx interim responses; joins repeated headers as node does', async () => {
    answer = (s) => s.end('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 206 Partial Content\r\nX-A: 1\r\nx-a: 2\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 5\r\n\r\nhello');
    const r = await get();
    expect(r.status).toBe(206);
    expect(r.headers['x-a']).toBe('1, 2');
    expect(r.headers['set-cookie']).toEqual(['a=1', 'b=2']);
    expect((await readAll((into) => r.body.readInto(into), 64)).toString()).toBe('hello');
  });

  it('refuses what is not an HTTP/1.1 response, and a head too long, as badResponse', async () => {
    answer = (s) => s.end('SSH-2.0-OpenSSH\r\n\r\n');
    await expect(get()).rejects.toMatchObject({ code: 'badResponse', message: expect.stringContaining('did not answer in HTTP/1.1') });
    answer = (s) => s.end(`HTTP/1.1 200 OK\r\n${'X-Long: y\r\n'.repeat(8000)}\r\n`);
    await expect(get()).rejects.toMatchObject({ code: 'badResponse', message: expect.stringContaining('longer than 65536 bytes') });
    answer = (s) => s.end('HTTP/1.1 200 OK\r\nno colon here\r\n\r\n');
    await expect(get()).rejects.toMatchObject({ code: 'badResponse', message: expect.stringContaining('malformed header line') });
  });

  it('a server that closes before its head ends is a connection error, not a hang', async () => {
    answer = (s) => s.end('HTTP/1.1 200 OK\r\nContent-Le');
    await expect(get()).rejects.toThrow(/closed the connection before/);
  });

  it('headers that do not come within the timeout: ETIMEDOUT', async () => {
    answer = () => undefined; // never answers
    const started = Date.now();
    await expect(httpsGet(url(), {}, { extraCa: ca, timeoutMs: 300, proxy: null })).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('through openDownload: a short body read into the caller buffer is a networkError that says how short', async () => {
    answer = (s) => {
      s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`);
      void writeInPieces(s, body.subarray(0, 500_000), 10_000).then(() => s.end());
    };
    const r = await openDownload({ url: url().href, ca, proxy: null });
    const into = Buffer.alloc(body.length);
    await expect(r.body.readInto!(into)).rejects.toMatchObject({ code: 'networkError', message: expect.stringContaining(`after 500000 of ${body.length} bytes`) });
  });
});
