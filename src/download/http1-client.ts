import type { IncomingHttpHeaders } from 'node:http';
import { isIP } from 'node:net';
import { connect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { openTunnel } from './download-agent.js';
import { DownloadError } from './errors.js';
import { proxyFor, type ProxySetting } from './proxy.js';
import { SocketReader } from './socket-reader.js';
import { trustContext, trustedCas } from './trust.js';

/**
 * One HTTPS GET over a connection of its own (HTTP/1.1, `Connection: close`), whose body is read
 * into the caller's buffers (SocketReader): the download's hot path. Node's http client cannot
 * give its body that way (it allocates a Buffer per TLS record and pushes it through a stream), so
 * this module speaks the small part of HTTP/1.1 a GET needs: a status line, headers, and a body
 * framed by Content-Length, chunked encoding or the connection's end.
 */

export interface ConnectOptions {
  /** PEM of a CA to trust besides the system's roots. */
  extraCa?: string;
  /** A proxy URL, null for none, undefined for HTTPS_PROXY / NO_PROXY. */
  proxy?: ProxySetting;
  /** The connection (and the proxy's tunnel) and the response's headers must come within this. */
  timeoutMs: number;
  signal?: AbortSignal;
  env?: NodeJS.ProcessEnv;
}

/** A response body, read into the caller's buffers. */
export interface BodyReader {
  /** Fills `into` from its start; resolves with the count, less than into.length only at the body's end. */
  readInto(into: Buffer): Promise<number>;
  /** Closes the connection; a waiting read fails with `err`. */
  destroy(err?: Error): void;
  /** Bytes received on the connection so far, as they arrive (for the watch's idle and speed limits). */
  readonly bytesIn: number;
}

export interface Http1Response {
  status: number;
  /** Header names in lower case; repeated headers joined with ', ' (set-cookie: an array), as node's http does. */
  headers: IncomingHttpHeaders;
  body: BodyReader;
}

const MAX_HEAD_BYTES = 64 * 1024;

/** GETs `url` with `headers`; the response's status and headers must arrive within `timeoutMs`. */
export async function httpsGet(url: URL, headers: Record<string, string>, options: ConnectOptions): Promise<Http1Response> {
  const reader = new SocketReader();
  const { signal, timeoutMs } = options;
  const onAbort = () => reader.destroy(signal?.reason instanceof Error ? signal.reason : Object.assign(new Error('the download was aborted'), { name: 'AbortError' }));
  signal?.throwIfAborted();
  signal?.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(() => reader.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })), timeoutMs);
  try {
    const socket = await connectTls(url, reader, options);
    socket.once('close', () => signal?.removeEventListener('abort', onAbort));
    socket.write(requestHead(url, headers));
    const head = await readHead(reader, url.host);
    return { status: head.status, headers: head.headers, body: bodyOf(head, reader) };
  } catch (err) {
    signal?.removeEventListener('abort', onAbort);
    reader.destroy();
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

async function connectTls(url: URL, reader: SocketReader, options: ConnectOptions): Promise<TLSSocket> {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = Number(url.port || 443);
  const proxy = proxyFor(host, port, options.proxy, options.env);
  const tlsOptions: ConnectionOptions = {
    host,
    port,
    ...(isIP(host) ? {} : { servername: host }),
    ca: trustedCas(options.extraCa),
    secureContext: trustContext(options.extraCa),
  };
  let socket: TLSSocket;
  if (proxy) {
    // Over a tunnel node reads the TLS socket through its stream (onread applies to its own handles only).
    const tunnel = await openTunnel(proxy, host, port, options.timeoutMs);
    socket = connect({ ...tlsOptions, socket: tunnel });
    reader.attach(socket, false);
  } else {
    socket = connect({ ...tlsOptions, onread: reader.onread } as ConnectionOptions);
    reader.attach(socket, true);
  }
  await new Promise<void>((resolve, reject) => {
    const failed = (err: Error) => reject(err);
    socket.once('error', failed);
    socket.once('secureConnect', () => {
      socket.off('error', failed);
      resolve();
    });
  });
  return socket;
}

function requestHead(url: URL, headers: Record<string, string>): string {
  const lines = [`GET ${url.pathname}${url.search} HTTP/1.1`, `Host: ${url.host}`];
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
  lines.push('Connection: close', '', '');
  return lines.join('\r\n');
}

interface Head {
  status: number;
  headers: IncomingHttpHeaders;
  /** Body bytes that came in the same reads as the head. */
  leftover: Buffer;
}

/** Reads the status line and the headers (skipping 1xx interim responses). */
async function readHead(reader: SocketReader, host: string): Promise<Head> {
  const buf = Buffer.allocUnsafe(MAX_HEAD_BYTES);
  let have = 0;
  for (;;) {
    const end = buf.subarray(0, have).indexOf('\r\n\r\n');
    if (end >= 0) {
      const head = parseHead(buf.toString('latin1', 0, end), host);
      const leftover = Buffer.from(buf.subarray(end + 4, have));
      if (head.status >= 100 && head.status < 200) {
        buf.set(leftover);
        have = leftover.length;
        continue;
      }
      return { ...head, leftover };
    }
    if (have === buf.length) throw new DownloadError('badResponse', `${host} sent response headers longer than ${MAX_HEAD_BYTES} bytes`, true);
    const n = await reader.read(buf.subarray(have), 1);
    if (n === 0) throw Object.assign(new Error(`${host} closed the connection before its response's headers ended`), { code: 'ECONNRESET' });
    have += n;
  }
}

function parseHead(text: string, host: string): { status: number; headers: IncomingHttpHeaders } {
  const [statusLine, ...lines] = text.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(statusLine);
  if (!m) throw new DownloadError('badResponse', `${host} did not answer in HTTP/1.1 (its first line: ${JSON.stringify(statusLine.slice(0, 80))})`, true);
  const headers: Record<string, string | string[]> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new DownloadError('badResponse', `${host} sent a malformed header line: ${JSON.stringify(line.slice(0, 80))}`, true);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    const before = headers[name];
    if (name === 'set-cookie') headers[name] = [...((before as string[] | undefined) ?? []), value];
    else headers[name] = before === undefined ? value : `${before as string}, ${value}`;
  }
  return { status: Number(m[1]), headers: headers as IncomingHttpHeaders };
}

function bodyOf(head: Head, reader: SocketReader): BodyReader {
  const te = head.headers['transfer-encoding'];
  if (te !== undefined && /(^|,)\s*chunked\s*$/i.test(te)) return new ChunkedBody(reader, head.leftover);
  const cl = head.headers['content-length'];
  // A bad or repeated length is planResponse's to judge; here the body is then read to the connection's end.
  return new FramedBody(reader, head.leftover, cl !== undefined && /^\d+$/.test(cl) ? Number(cl) : Infinity);
}

/** A body of Content-Length bytes (Infinity: until the connection ends). */
class FramedBody implements BodyReader {
  constructor(
    private readonly reader: SocketReader,
    private leftover: Buffer,
    private remaining: number,
  ) {}

  async readInto(into: Buffer): Promise<number> {
    const want = Math.min(into.length, this.remaining);
    let filled = 0;
    if (this.leftover.length > 0) {
      filled = this.leftover.copy(into, 0, 0, Math.min(want, this.leftover.length));
      this.leftover = this.leftover.subarray(filled);
    }
    if (filled < want) filled += await this.reader.read(into.subarray(filled, want));
    this.remaining -= filled;
    return filled;
  }

  destroy(err?: Error): void {
    this.reader.destroy(err);
  }

  get bytesIn(): number {
    return this.reader.bytesIn;
  }
}

/** A chunked body, decoded in place: raw bytes are read into the caller's buffer and the framing squeezed out. */
class ChunkedBody implements BodyReader {
  private state: 'size' | 'data' | 'dataEnd' | 'trailer' | 'done' = 'size';
  private line = '';
  private left = 0;

  constructor(
    private readonly reader: SocketReader,
    private leftover: Buffer,
  ) {}

  async readInto(into: Buffer): Promise<number> {
    let filled = 0;
    while (filled < into.length && this.state !== 'done') {
      let n: number;
      if (this.leftover.length > 0) {
        n = this.leftover.copy(into, filled);
        this.leftover = this.leftover.subarray(n);
      } else {
        n = await this.reader.read(into.subarray(filled), 1);
        if (n === 0) break; // ended inside the body: the caller sees a short body
      }
      filled = this.decode(into, filled, filled + n);
    }
    return filled;
  }

  destroy(err?: Error): void {
    this.reader.destroy(err);
  }

  get bytesIn(): number {
    return this.reader.bytesIn;
  }

  /** Decodes raw bytes buf[from, to) in place; returns where the decoded bytes end. */
  private decode(buf: Buffer, from: number, to: number): number {
    let out = from;
    let i = from;
    while (i < to) {
      if (this.state === 'data') {
        const k = Math.min(to - i, this.left);
        if (out !== i) buf.copyWithin(out, i, i + k);
        out += k;
        i += k;
        this.left -= k;
        if (this.left === 0) this.state = 'dataEnd';
        continue;
      }
      const c = buf[i++];
      if (this.state === 'done') continue;
      if (c !== 0x0a) {
        if (this.state !== 'dataEnd') this.line += String.fromCharCode(c);
        if (this.line.length > 4096) throw new DownloadError('badResponse', 'a chunked response has a framing line longer than 4096 bytes', true);
        continue;
      }
      const line = this.line.replace(/\r$/, '');
      this.line = '';
      if (this.state === 'dataEnd') this.state = 'size';
      else if (this.state === 'trailer') {
        if (line === '') this.state = 'done';
      } else {
        const size = /^[0-9a-fA-F]{1,12}(?=$|[ \t;])/.exec(line);
        if (!size) throw new DownloadError('badResponse', `a chunked response has a malformed chunk size line: ${JSON.stringify(line.slice(0, 40))}`, true);
        this.left = parseInt(size[0], 16);
        this.state = this.left === 0 ? 'trailer' : 'data';
      }
    }
    return out;
  }
}
