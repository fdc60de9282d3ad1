import { DownloadError, toDownloadError } from './errors.js';
import { httpsGet, type ConnectOptions, type Http1Response } from './http1-client.js';
import type { ProxySetting } from './proxy.js';
import { planResponse, type ResponsePlan } from './response-headers.js';
import { DownloadWatch, type MinSpeed, type WatchedBody } from './watch.js';

export { DownloadError, type DownloadErrorCode } from './errors.js';

export interface DownloadRequest {
  url: string;
  /** First byte wanted (HTTP Range); 0 for the whole file. */
  start?: number;
  /**
   * The first byte not wanted: asks for bytes start..end-1 only (a bounded Range). A server that
   * ignores Range still sends the whole file (from `start` on): the caller stops reading at `end`.
   */
  end?: number;
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
   * `readInto`, where present, fills the caller's own buffer (no copy, no allocation per piece).
   */
  body: DownloadBody;
  /** Size of the whole file, when the server says it (Content-Length or Content-Range). */
  totalSize: number | null;
  /** The file's strong ETag, else its Last-Modified, else null: the value for a later `ifRange`. */
  validator: string | null;
  /**
   * True when a ranged request with `ifRange` got the whole file back because the file changed:
   * the body starts at byte 0 of the new file, and whatever the caller kept of the old one is stale.
   */
  restartedFromZero: boolean;
  /** True when the server answered the Range (206): the body holds only the bytes asked for. */
  partial?: boolean;
  /** Closes the connection (use when stopping early). */
  destroy(): void;
}

/** A body to iterate, or (faster) to read into one's own buffers. */
export interface DownloadBody extends AsyncIterable<Buffer> {
  /** Fills `into` from its start; resolves with the count, less than into.length only at the body's end. */
  readInto?(into: Buffer): Promise<number>;
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
  if (start > 0 || req.end !== undefined) {
    headers.Range = `bytes=${start}-${req.end === undefined ? '' : req.end - 1}`;
    if (req.ifRange !== undefined) headers['If-Range'] = req.ifRange;
  }
  const where = `${url.host}${url.pathname}`;
  const watch = new DownloadWatch(url.host, { idleTimeoutMs, deadlineMs: req.deadlineMs, minSpeed: req.minSpeed }, req.signal);
  let response: Http1Response;
  try {
    response = await getFollowingRedirects(url, headers, { extraCa: req.ca, proxy: req.proxy, timeoutMs: idleTimeoutMs, signal: watch.signal }, where);
  } catch (err) {
    watch.stop();
    throw watch.failure ?? toDownloadError(err, url.host);
  }
  const abandon = (err: DownloadError): DownloadError => {
    watch.stop();
    response.body.destroy();
    return err;
  };
  const { status } = response;
  if (status === 416 && start > 0) {
    // The file is now shorter than the position a resume asks for: it is another file.
    throw abandon(new DownloadError('fileChanged', `the file at ${where} is now shorter than byte ${start} (HTTP 416, Content-Range '${response.headers['content-range'] ?? ''}'); start again from byte 0`, true));
  }
  if (status !== 200 && status !== 206) {
    const transient = status === 429 || status >= 500;
    throw abandon(new DownloadError('httpError', `${url.host} answered HTTP ${status} for ${url.pathname}`, transient));
  }
  let plan: ResponsePlan;
  try {
    plan = planResponse(status, response.headers, { start, end: req.end, ifRange: req.ifRange, expectedTotal: req.expectedTotal }, where);
  } catch (err) {
    throw abandon(err as DownloadError);
  }
  const { skip, totalSize, validator, restartedFromZero } = plan;
  const body = watch.watch(response.body, plan.bodyLength);
  return {
    body: skip > 0 ? await skipBytes(body, skip) : body,
    totalSize,
    validator,
    restartedFromZero,
    partial: status === 206,
    destroy: () => {
      watch.stop();
      response.body.destroy();
    },
  };
}

const MAX_REDIRECTS = 5;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/**
 * GET over a connection of its own (http1-client.ts: the body is read into the caller's buffers).
 * Follows up to MAX_REDIRECTS redirects, to https only, keeping the Range headers; each response's
 * headers must arrive within `options.timeoutMs` of its request.
 */
async function getFollowingRedirects(first: URL, headers: Record<string, string>, options: ConnectOptions, where: string): Promise<Http1Response> {
  let url = first;
  for (let redirects = 0; ; redirects++) {
    const response = await httpsGet(url, headers, options);
    const location = response.headers.location;
    if (!REDIRECTS.has(response.status) || !location) return response;
    response.body.destroy();
    const next = new URL(location, url);
    if (next.protocol !== 'https:') {
      throw new DownloadError('notHttps', `${where} redirected to a non-https address (${next.href}); only https is followed`, false);
    }
    if (redirects + 1 > MAX_REDIRECTS) throw new DownloadError('tooManyRedirects', `${first.host} redirected more than ${MAX_REDIRECTS} times (a loop?), last to ${next.host}${next.pathname}`, false);
    url = next;
  }
}

const startOf = (req: DownloadRequest) => req.start ?? 0;

function checkRequest(req: DownloadRequest): void {
  const wholeAtLeast = (name: string, value: number | undefined, min: number) => {
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= min)) {
      throw new TypeError(`download option ${name} must be a whole number >= ${min}, got ${value}`);
    }
  };
  wholeAtLeast('start', req.start, 0);
  wholeAtLeast('expectedTotal', req.expectedTotal, 0);
  wholeAtLeast('end', req.end, startOf(req) + 1);
  wholeAtLeast('idleTimeoutMs', req.idleTimeoutMs, 1);
  wholeAtLeast('deadlineMs', req.deadlineMs, 1);
  wholeAtLeast('minSpeed.bytesPerSecond', req.minSpeed?.bytesPerSecond, 1);
  wholeAtLeast('minSpeed.windowMs', req.minSpeed?.windowMs, 1);
  if (req.ifRange !== undefined && (req.ifRange === '' || /[\r\n]/.test(req.ifRange))) {
    throw new TypeError(`download option ifRange must be a validator from an earlier response, got ${JSON.stringify(req.ifRange)}`);
  }
}

/** Reads and drops the body's first `count` bytes (a server that ignored Range sent them). */
async function skipBytes(body: WatchedBody, count: number): Promise<WatchedBody> {
  const scratch = Buffer.allocUnsafe(Math.min(count, 1024 * 1024));
  for (let left = count; left > 0; ) {
    const want = Math.min(left, scratch.length);
    const n = await body.readInto(scratch.subarray(0, want));
    if (n < want) break; // the body ended: the caller sees it end
    left -= n;
  }
  return body;
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
