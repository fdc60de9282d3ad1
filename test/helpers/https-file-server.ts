import { createServer, type Server } from 'node:https';
import { createReadStream, statSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureCertificates } from '../../src/hub-emulator/certificates.js';

export interface FileServerFaults {
  /** Answer this status for the next N requests. */
  failNext?: { count: number; status: number };
  /** Cut the connection after this many body bytes (once). */
  cutAfterBytes?: number;
  /** Ignore Range headers (answer 200 with the whole file). */
  ignoreRange?: boolean;
  /** Leave out Content-Length. */
  noContentLength?: boolean;
  /** Send at most this many bytes per second (slow enough to interrupt a download on purpose). */
  bytesPerSecond?: number;
}

export interface TestFileServer {
  url(name: string): string;
  /** The CA (PEM, and a file) that signed the server's certificate for localhost. */
  ca: string;
  caFile: string;
  /** Serve a local file under /name. */
  add(name: string, path: string): void;
  faults: FileServerFaults;
  requests: { path: string; range: string | undefined }[];
  close(): Promise<void>;
}

/** A real HTTPS file server on 127.0.0.1 with Range support and injectable faults, for tests. */
export async function startTestFileServer(): Promise<TestFileServer> {
  // The emulator's own certificate maker: a throwaway CA and a server certificate for localhost.
  const tls = await ensureCertificates(await mkdtemp(join(tmpdir(), 'piota-test-tls-')), 'localhost');
  const files = new Map<string, string>();
  const faults: FileServerFaults = {};
  const requests: TestFileServer['requests'] = [];
  const server: Server = createServer({ key: tls.serverKeyPem, cert: tls.serverCertPem }, (req, res) => {
    const name = decodeURIComponent(new URL(req.url ?? '/', 'https://x').pathname.slice(1));
    requests.push({ path: name, range: req.headers.range });
    if (faults.failNext && faults.failNext.count > 0) {
      faults.failNext.count--;
      res.writeHead(faults.failNext.status).end();
      return;
    }
    const path = files.get(name);
    if (!path) {
      res.writeHead(404).end();
      return;
    }
    const size = statSync(path).size;
    let start = 0;
    let end = size - 1;
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const ranged = m && !faults.ignoreRange;
    if (ranged) {
      start = Number(m[1]);
      end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
    }
    const headers: Record<string, string | number> = { 'Content-Type': 'application/octet-stream', 'Accept-Ranges': 'bytes' };
    if (!faults.noContentLength) headers['Content-Length'] = end - start + 1;
    if (ranged) headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
    res.writeHead(ranged ? 206 : 200, headers);
    const stream = createReadStream(path, { start, end });
    const cut = faults.cutAfterBytes;
    if (cut !== undefined) {
      faults.cutAfterBytes = undefined;
      let sent = 0;
      stream.on('data', (chunk: Buffer | string) => {
        const c = Buffer.from(chunk);
        if (sent + c.length >= cut) {
          res.write(c.subarray(0, cut - sent));
          stream.destroy();
          res.socket?.destroy();
          return;
        }
        sent += c.length;
        res.write(c);
      });
      stream.on('end', () => res.end());
    } else if (faults.bytesPerSecond) {
      void throttled(stream, res, faults.bytesPerSecond);
    } else {
      stream.pipe(res);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: (name) => `https://localhost:${port}/${encodeURIComponent(name)}`,
    ca: tls.caPem,
    caFile: tls.caFile,
    add: (name, path) => files.set(name, path),
    faults,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function throttled(stream: AsyncIterable<Buffer>, res: import('node:http').ServerResponse, bytesPerSecond: number): Promise<void> {
  const slice = Math.max(1024, Math.floor(bytesPerSecond / 20));
  try {
    for await (const chunk of stream) {
      for (let i = 0; i < chunk.length; i += slice) {
        if (res.destroyed) return;
        res.write(chunk.subarray(i, i + slice));
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    res.end();
  } catch {
    res.destroy();
  }
}
