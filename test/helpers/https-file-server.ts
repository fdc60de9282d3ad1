import { createServer, type Server } from 'node:https';
import type { ServerResponse } from 'node:http';
import { createReadStream, statSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureCertificates } from '../../src/hub-emulator/certificates.js';

/**
 * Misbehaviours to inject. The object is live: set a field between requests, clear it after. The
 * "once" ones clear themselves after they fired.
 */
export interface FileServerFaults {
  /** Answer this status for the next N requests. */
  failNext?: { count: number; status: number };
  /** Answer a redirect (302 unless `status`) to `location` for the next N requests. */
  redirectNext?: { count: number; location: string; status?: number };
  /** Cut the connection after this many body bytes (once). */
  cutAfterBytes?: number;
  /** Send this many body bytes, then nothing more, keeping the connection open (once). */
  stallAfterBytes?: number;
  /**
   * Cut (or stall) the first response that reaches this byte of the file, at that byte (once):
   * where a download is hit does not depend on how it splits the file into requests.
   */
  cutAtFileByte?: number;
  stallAtFileByte?: number;
  /** Wait this long before answering the next request (once): a server slow to send its headers. */
  delayHeadersMs?: number;
  /** Ignore Range headers (answer 200 with the whole file). */
  ignoreRange?: boolean;
  /** Honour Range but not If-Range: a changed file is spliced (a broken server). */
  ignoreIfRange?: boolean;
  /** Leave out Content-Length. */
  noContentLength?: boolean;
  /**
   * Declare a Content-Length this many bytes off the truth. Positive: the body is shorter than
   * declared, and the connection closes after it. Negative: the body is longer than declared.
   */
  contentLengthDelta?: number;
  /** Send at most this many bytes per second (slow enough to interrupt a download on purpose). */
  bytesPerSecond?: number;
  /** Leave out the ETag header (Last-Modified stays, unless `noLastModified`). */
  noEtag?: boolean;
  /** Send the ETag as weak (W/"..."), which If-Range may not use. */
  weakEtag?: boolean;
  /** Leave out the Last-Modified header. */
  noLastModified?: boolean;
  /**
   * Replace a file between requests: after `requests` more requests for `name` were answered, it
   * serves `path` instead (with that file's own ETag and Last-Modified). Clears itself.
   */
  replaceAfter?: { name: string; requests: number; path: string };
}

export interface TestFileServerOptions {
  /**
   * The loopback address to listen on and to put in URLs. Default: listens on 127.0.0.1, URLs name
   * `localhost`. The certificate names localhost, 127.0.0.1 and ::1 only, so another address (such
   * as 127.0.0.2) gives a server whose certificate does not match the URL's host.
   */
  host?: string;
  /**
   * Reuse the CA and certificate of another server (its `tlsDir`) instead of making new ones: saves
   * the key generation when a test needs the same trust on a second address.
   */
  tlsDir?: string;
}

export interface TestFileServer {
  url(name: string): string;
  /** The CA (PEM, and a file) that signed the server's certificate. Each server has its own CA. */
  ca: string;
  caFile: string;
  /** Where the CA and the certificate live (for `tlsDir` of another server). */
  tlsDir: string;
  port: number;
  /** Serve a local file under /name. */
  add(name: string, path: string): void;
  /** The ETag the server sends for /name now (strong form). */
  etagOf(name: string): string;
  faults: FileServerFaults;
  /** Every request, in order, with the headers a download test looks at. */
  requests: { path: string; range: string | undefined; ifRange: string | undefined }[];
  close(): Promise<void>;
}

/** A real HTTPS file server on loopback with Range, If-Range, validators and injectable faults, for tests. */
export async function startTestFileServer(options: TestFileServerOptions = {}): Promise<TestFileServer> {
  // The emulator's own certificate maker: a throwaway CA and a server certificate for localhost.
  const tlsDir = options.tlsDir ?? (await mkdtemp(join(tmpdir(), 'piota-test-tls-')));
  const tls = await ensureCertificates(tlsDir, 'localhost');
  const files = new Map<string, string>();
  const faults: FileServerFaults = {};
  const requests: TestFileServer['requests'] = [];
  const server: Server = createServer({ key: tls.serverKeyPem, cert: tls.serverCertPem }, (req, res) => {
    const name = decodeURIComponent(new URL(req.url ?? '/', 'https://x').pathname.slice(1));
    requests.push({ path: name, range: req.headers.range, ifRange: req.headers['if-range'] as string | undefined });
    const delay = faults.delayHeadersMs;
    faults.delayHeadersMs = undefined;
    // A client that gave up while the answer was delayed gets nothing: it must not use up the
    // one-shot faults that a later request (a later test) set.
    if (delay) setTimeout(() => (res.destroyed || req.socket.destroyed ? undefined : answer(name, req.headers, res)), delay);
    else answer(name, req.headers, res);
  });

  function answer(name: string, headers: import('node:http').IncomingHttpHeaders, res: ServerResponse): void {
    if (faults.failNext && faults.failNext.count > 0) {
      faults.failNext.count--;
      res.writeHead(faults.failNext.status).end();
      return;
    }
    if (faults.redirectNext && faults.redirectNext.count > 0) {
      faults.redirectNext.count--;
      res.writeHead(faults.redirectNext.status ?? 302, { Location: faults.redirectNext.location }).end();
      return;
    }
    const swap = faults.replaceAfter;
    if (swap && swap.name === name) {
      if (swap.requests === 0) {
        files.set(name, swap.path);
        faults.replaceAfter = undefined;
      } else {
        swap.requests--;
      }
    }
    const path = files.get(name);
    if (!path) {
      res.writeHead(404).end();
      return;
    }
    const { size } = statSync(path);
    const etag = etagOfPath(path);
    const lastModified = statSync(path).mtime.toUTCString();
    let start = 0;
    let end = size - 1;
    const m = /^bytes=(\d+)-(\d*)$/.exec(headers.range ?? '');
    const ifRange = headers['if-range'] as string | undefined;
    // If-Range: the range only if the file is still the one the client has (strong ETag, or the exact date).
    const sameFile = ifRange === undefined || faults.ignoreIfRange || (ifRange.startsWith('"') ? ifRange === etag && !faults.weakEtag : ifRange === lastModified);
    const ranged = m && !faults.ignoreRange && sameFile;
    if (ranged) {
      start = Number(m[1]);
      end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
      if (start >= size) {
        // As real servers do: a range past the end cannot be satisfied.
        res.writeHead(416, { 'Content-Range': `bytes */${size}` }).end();
        return;
      }
    }
    const out: Record<string, string | number> = { 'Content-Type': 'application/octet-stream', 'Accept-Ranges': 'bytes' };
    const length = end - start + 1;
    if (!faults.noContentLength) out['Content-Length'] = length + (faults.contentLengthDelta ?? 0);
    if (ranged) out['Content-Range'] = `bytes ${start}-${end}/${size}`;
    if (!faults.noEtag) out.ETag = faults.weakEtag ? `W/${etag}` : etag;
    if (!faults.noLastModified) out['Last-Modified'] = lastModified;
    res.writeHead(ranged ? 206 : 200, out);
    let cutAfter = faults.cutAfterBytes;
    let stallAfter = faults.stallAfterBytes;
    faults.cutAfterBytes = undefined;
    faults.stallAfterBytes = undefined;
    const reaches = (byte: number | undefined) => byte !== undefined && start <= byte && byte <= end;
    if (reaches(faults.cutAtFileByte)) {
      cutAfter = faults.cutAtFileByte! - start;
      faults.cutAtFileByte = undefined;
    }
    if (reaches(faults.stallAtFileByte)) {
      stallAfter = faults.stallAtFileByte! - start;
      faults.stallAtFileByte = undefined;
    }
    const closeAtEnd = (faults.contentLengthDelta ?? 0) > 0;
    void sendBody(createReadStream(path, { start, end }), res, { cutAfter, stallAfter, bytesPerSecond: faults.bytesPerSecond, closeAtEnd });
  }

  await new Promise<void>((resolve) => server.listen(0, options.host ?? '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const urlHost = options.host ? (options.host.includes(':') ? `[${options.host}]` : options.host) : 'localhost';
  return {
    url: (name) => `https://${urlHost}:${port}/${encodeURIComponent(name)}`,
    ca: tls.caPem,
    caFile: tls.caFile,
    tlsDir,
    port,
    add: (name, path) => files.set(name, path),
    etagOf: (name) => etagOfPath(files.get(name) ?? ''),
    faults,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Changes with the file's identity, size and modification time, as most servers' ETags do. */
function etagOfPath(path: string): string {
  const s = statSync(path);
  return `"${s.ino.toString(16)}-${s.size.toString(16)}-${Math.floor(s.mtimeMs).toString(16)}"`;
}

interface BodyPlan {
  /** Destroy the connection after this many bytes. */
  cutAfter?: number;
  /** Stop sending after this many bytes, connection left open. */
  stallAfter?: number;
  bytesPerSecond?: number;
  /** Destroy the connection instead of ending the response (the body was declared longer). */
  closeAtEnd: boolean;
}

async function sendBody(source: import('node:fs').ReadStream, res: ServerResponse, plan: BodyPlan): Promise<void> {
  // Throttled: slices of 1/20 s of data, one every 50 ms.
  const slice = plan.bytesPerSecond ? Math.max(1024, Math.floor(plan.bytesPerSecond / 20)) : Infinity;
  const stopAt = plan.cutAfter ?? plan.stallAfter;
  let sent = 0;
  try {
    for await (const chunk of source) {
      for (let i = 0; i < chunk.length; i += slice) {
        if (res.destroyed) return;
        const piece = chunk.subarray(i, i + slice);
        if (stopAt !== undefined && sent + piece.length >= stopAt) {
          res.write(piece.subarray(0, stopAt - sent));
          if (plan.cutAfter !== undefined) res.socket?.destroy();
          return;
        }
        sent += piece.length;
        if (!res.write(piece)) await drainOrClose(res);
        if (plan.bytesPerSecond) await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    if (plan.closeAtEnd) res.socket?.destroy();
    else res.end();
  } catch {
    res.destroy();
  } finally {
    source.destroy();
  }
}

/** Resolves when `res` drains or closes, leaving no listener behind (a long body waits thousands of times). */
function drainOrClose(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
