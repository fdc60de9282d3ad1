import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { basename } from 'node:path';

export interface BundleServer {
  /** The https URL of a served file. */
  url(path: string): string;
  close(): Promise<void>;
}

/**
 * A tiny HTTPS server for the demo: serves the given files by name, with Content-Length and Range
 * (so a device can resume), on 127.0.0.1 only.
 */
export async function serveFiles(files: string[], tls: { key: string; cert: string }, host = 'localhost'): Promise<BundleServer> {
  const byName = new Map(files.map((f) => [basename(f), f]));
  const server = createServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    void (async () => {
      const name = decodeURIComponent(new URL(req.url ?? '/', 'https://x').pathname.slice(1));
      const path = byName.get(name);
      if (!path || req.method !== 'GET') {
        res.writeHead(path ? 405 : 404).end();
        return;
      }
      const size = (await stat(path)).size;
      const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
      const start = m ? Number(m[1]) : 0;
      const end = m && m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
      if (start >= size && size > 0) {
        res.writeHead(416, { 'Content-Range': `bytes */${size}` }).end();
        return;
      }
      res.writeHead(m ? 206 : 200, {
        'Content-Type': 'application/octet-stream',
        'Content-Length': end - start + 1,
        'Accept-Ranges': 'bytes',
        ...(m ? { 'Content-Range': `bytes ${start}-${end}/${size}` } : {}),
      });
      createReadStream(path, { start, end }).pipe(res);
    })().catch(() => res.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: (path) => `https://${host}:${port}/${encodeURIComponent(basename(path))}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
