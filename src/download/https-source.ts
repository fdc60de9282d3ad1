import axios from 'axios';
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { DownloadAgent } from './download-agent.js';
import { DownloadError, toDownloadError } from './errors.js';
import type { ProxySetting } from './proxy.js';
import { DownloadWatch, type MinSpeed } from './watch.js';

export { DownloadError, type DownloadErrorCode } from './errors.js';

export interface DownloadRequest {
  url: string;
  /** First byte wanted (HTTP Range); 0 for the whole file. */
  start?: number;
  /**
   * The `validator` of an earlier response for this file. Sent as If-Range with a ranged request
   * (start > 0): a server whose file changed since then answers the whole new file, and the
   * response says `restartedFromZero`.
   */
  ifRange?: string;
  /** The size of the file as the caller knows it: a response that describes another size is `fileChanged`. */
  expectedTotal?: number;
  /** PEM of a CA to trust besides the system's roots (a private file server). */
  ca?: string;
  /** A proxy URL (http://[user:password@]host:port), null for none; undefined: HTTPS_PROXY / NO_PROXY. */
  proxy?: ProxySetting;
  /** Abort when no byte arrives for this long (default 30 s): networkError. */
  idleTimeoutMs?: number;
  /** Abort when the whole attempt (request to last byte) takes longer: deadlineExceeded. */
  deadlineMs?: number;
  /** Abort when the average speed over the last window falls below: tooSlow. */
  minSpeed?: MinSpeed;
  signal?: AbortSignal;
}

export interface DownloadResponse {
  /**
   * The body. It starts at `start` (bytes before it are skipped here when the server ignores Range),
   * or at byte 0 when `restartedFromZero`. It ends in a DownloadError when the download fails.
   */
  body: AsyncIterable<Buffer>;
  /** Size of the whole file, when the server says it (Content-Length or Content-Range). */
  totalSize: number | null;
  /** The file's strong ETag, else its Last-Modified, else null: the value for a later `ifRange`. */
  validator: string | null;
  /**
   * True when a ranged request with `ifRange` got the whole file back because the file changed:
   * the body starts at byte 0 of the new file, and whatever the caller kept of the old one is stale.
   */
  restartedFromZero: boolean;
  /** Closes the connection (use when stopping early). */
  destroy(): void;
}

const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

/**
 * Opens an HTTPS GET as a byte stream, never buffered whole. Redirects are followed only to https.
 * A server that ignores Range (200 instead of 206) still works: the skipped bytes are read and
 * dropped, unless If-Range says the file changed. docs/download.md describes the whole contract.
 */
export async function openDownload(req: DownloadRequest): Promise<DownloadResponse> {
  const url = parseHttpsUrl(req.url);
  checkRequest(req);
  const start = req.start ?? 0;
  const idleTimeoutMs = req.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  const headers: Record<string, string> = { 'Accept-Encoding': 'identity' };
  if (start > 0) {
    headers.Range = `bytes=${start}-`;
    if (req.ifRange !== undefined) headers['If-Range'] = req.ifRange;
  }
  const where = `${url.host}${url.pathname}`;
  const watch = new DownloadWatch(url.host, { idleTimeoutMs, deadlineMs: req.deadlineMs, minSpeed: req.minSpeed }, req.signal);
  let response;
  try {
    response = await axios.get<Readable>(url.href, {
      responseType: 'stream',
      headers,
      httpsAgent: new DownloadAgent({ extraCa: req.ca, proxy: req.proxy, connectTimeoutMs: idleTimeoutMs }),
      maxRedirects: 5,
      beforeRedirect: (options) => {
        if (options.protocol !== 'https:') {
          throw new DownloadError('notHttps', `${where} redirected to a non-https address (${options.protocol}//${options.host}${options.path ?? ''}); only https is followed`, false);
        }
      },
      // Until the response headers; the body is watched by `watch` (the axios timer stops there).
      timeout: idleTimeoutMs,
      signal: watch.signal,
      validateStatus: () => true,
      decompress: false,
      // -1: the body is the response itself, not a copy through axios's length-counting stream.
      maxContentLength: -1,
      // axios's proxy does not tunnel https: DownloadAgent does (HTTPS_PROXY, NO_PROXY, `proxy`).
      proxy: false,
    });
  } catch (err) {
    watch.stop();
    throw watch.failure ?? toDownloadError(err, url.host);
  }
  const stream = response.data;
  // The socket idle timer follow-redirects set for the headers would also count the caller's own
  // pauses (backpressure); from here on the watch measures idleness, on the time spent waiting.
  (stream as Partial<Pick<import('node:http').IncomingMessage, 'socket'>>).socket?.setTimeout(0);
  const abandon = (err: DownloadError): DownloadError => {
    watch.stop();
    stream.destroy();
    return err;
  };
  const { status } = response;
  if (status !== 200 && status !== 206) {
    const transient = status === 429 || status >= 500;
    throw abandon(new DownloadError('httpError', `${url.host} answered HTTP ${status} for ${url.pathname}`, transient));
  }
  const h = response.headers as unknown as IncomingHttpHeaders;
  const declared = contentLength(h);
  const validator = validatorOf(h);
  let totalSize: number | null;
  let expectedBody = declared;
  let skip = 0;
  let restartedFromZero = false;
  if (status === 206) {
    const range = parseContentRange(h['content-range']);
    if (!range || range.first !== start || (declared !== null && declared !== range.last - range.first + 1)) {
      throw abandon(new DownloadError('badResponse', `${url.host} answered a range request with Content-Range '${h['content-range'] ?? ''}' and Content-Length ${declared ?? 'none'}, expected bytes ${start}-`, true));
    }
    // A server that honours Range but not If-Range would splice two files: its validator tells.
    if (req.ifRange !== undefined && sameFile(h, req.ifRange) === false) {
      throw abandon(changed(where, `its validator is now ${validator}, not ${req.ifRange}`));
    }
    totalSize = range.total;
    expectedBody = range.length;
  } else {
    totalSize = declared;
    if (start > 0 && req.ifRange !== undefined && sameFile(h, req.ifRange) !== true) restartedFromZero = true;
    else skip = start;
  }
  if (!restartedFromZero && req.expectedTotal !== undefined && totalSize !== null && totalSize !== req.expectedTotal) {
    throw abandon(changed(where, `it now has ${totalSize} bytes, not ${req.expectedTotal}`));
  }
  const body = watch.watch(stream, expectedBody);
  return {
    body: skip > 0 ? skipBytes(body, skip) : body,
    totalSize,
    validator,
    restartedFromZero,
    destroy: () => {
      watch.stop();
      stream.destroy();
    },
  };
}

function changed(where: string, how: string): DownloadError {
  return new DownloadError('fileChanged', `the file at ${where} changed since this download started (${how}); start again from byte 0`, true);
}

function checkRequest(req: DownloadRequest): void {
  const wholeAtLeast = (name: string, value: number | undefined, min: number) => {
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= min)) {
      throw new TypeError(`download option ${name} must be a whole number >= ${min}, got ${value}`);
    }
  };
  wholeAtLeast('start', req.start, 0);
  wholeAtLeast('expectedTotal', req.expectedTotal, 0);
  wholeAtLeast('idleTimeoutMs', req.idleTimeoutMs, 1);
  wholeAtLeast('deadlineMs', req.deadlineMs, 1);
  wholeAtLeast('minSpeed.bytesPerSecond', req.minSpeed?.bytesPerSecond, 1);
  wholeAtLeast('minSpeed.windowMs', req.minSpeed?.windowMs, 1);
  if (req.ifRange !== undefined && (req.ifRange === '' || /[\r\n]/.test(req.ifRange))) {
    throw new TypeError(`download option ifRange must be a validator from an earlier response, got ${JSON.stringify(req.ifRange)}`);
  }
}

function contentLength(h: IncomingHttpHeaders): number | null {
  const raw = h['content-length'];
  return raw !== undefined && /^\d+$/.test(raw) ? Number(raw) : null;
}

/**
 * A strong ETag, else Last-Modified. A weak ETag (W/...) may not be used in If-Range; a date may,
 * though it is only as exact as its second (the docs say so).
 */
function validatorOf(h: IncomingHttpHeaders): string | null {
  const etag = h.etag;
  if (etag && !etag.startsWith('W/')) return etag;
  return h['last-modified'] ?? null;
}

/** Whether the response carries `validator` (true), another one of its kind (false), or none (null). */
function sameFile(h: IncomingHttpHeaders, validator: string): boolean | null {
  const current = validator.startsWith('"') ? h.etag : h['last-modified'];
  return current === undefined ? null : current === validator;
}

function parseContentRange(raw: string | undefined): { first: number; last: number; length: number; total: number | null } | null {
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(raw ?? '');
  if (!m) return null;
  const [first, last] = [Number(m[1]), Number(m[2])];
  const total = m[3] === '*' ? null : Number(m[3]);
  if (last < first || (total !== null && last >= total)) return null;
  return { first, last, length: last - first + 1, total };
}

async function* skipBytes(stream: AsyncIterable<Buffer>, count: number): AsyncIterable<Buffer> {
  let left = count;
  for await (const chunk of stream) {
    if (left >= chunk.length) {
      left -= chunk.length;
      continue;
    }
    yield left > 0 ? chunk.subarray(left) : chunk;
    left = 0;
  }
}

function parseHttpsUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new DownloadError('notHttps', `'${raw}' is not a URL`, false);
  }
  if (url.protocol !== 'https:') throw new DownloadError('notHttps', `'${raw}' is not an https URL`, false);
  return url;
}
