import axios, { AxiosError } from 'axios';
import { Agent } from 'node:https';
import type { Readable } from 'node:stream';

/** A download that failed: `code` says what a program can act on, the message what a person can. */
export class DownloadError extends Error {
  override name = 'DownloadError';
  constructor(
    readonly code: 'httpError' | 'networkError' | 'badResponse' | 'notHttps',
    message: string,
    /** Worth trying again later (network trouble, 5xx, 429), as opposed to a refusal (404, 403). */
    readonly transient: boolean,
  ) {
    super(message);
  }
}

export interface DownloadRequest {
  url: string;
  /** First byte wanted (HTTP Range); 0 for the whole file. */
  start?: number;
  /** PEM of extra CAs to trust for this download (a private file server). */
  ca?: string;
  /** Abort the connection when no byte arrives for this long. */
  idleTimeoutMs?: number;
  signal?: AbortSignal;
}

export interface DownloadResponse {
  /** The body, starting at `start` (bytes before it are skipped here when the server ignores Range). */
  body: AsyncIterable<Buffer>;
  /** Size of the whole file, when the server says it (Content-Length or Content-Range). */
  totalSize: number | null;
  /** Closes the connection (use when stopping early). */
  destroy(): void;
}

/**
 * Opens an HTTPS GET as a byte stream, never buffered whole. Redirects are followed only to https.
 * A server that ignores Range (200 instead of 206) still works: the skipped bytes are read and dropped.
 */
export async function openDownload(req: DownloadRequest): Promise<DownloadResponse> {
  const url = parseHttpsUrl(req.url);
  const start = req.start ?? 0;
  const headers: Record<string, string> = { 'Accept-Encoding': 'identity' };
  if (start > 0) headers.Range = `bytes=${start}-`;
  let response;
  try {
    response = await axios.get<Readable>(url.href, {
      responseType: 'stream',
      headers,
      httpsAgent: new Agent({ ca: req.ca ? [req.ca] : undefined, keepAlive: false }),
      maxRedirects: 5,
      beforeRedirect: (options) => {
        if (options.protocol !== 'https:') throw new DownloadError('notHttps', `redirected to a non-https address (${options.protocol}//${options.hostname})`, false);
      },
      timeout: req.idleTimeoutMs ?? 30_000,
      signal: req.signal,
      validateStatus: () => true,
      decompress: false,
      maxContentLength: Infinity,
      proxy: false,
    });
  } catch (err) {
    throw toDownloadError(err, url);
  }
  const { status } = response;
  const stream = response.data;
  if (status !== 200 && status !== 206) {
    stream.destroy();
    const transient = status === 429 || status >= 500;
    throw new DownloadError('httpError', `${url.host} answered HTTP ${status} for ${url.pathname}`, transient);
  }
  const idle = req.idleTimeoutMs ?? 30_000;
  (stream as unknown as { socket?: { setTimeout(ms: number, cb: () => void): void } }).socket?.setTimeout(idle, () =>
    stream.destroy(new DownloadError('networkError', `no data from ${url.host} for ${idle / 1000} s`, true)),
  );
  const lengthHeader = response.headers['content-length'];
  const length = lengthHeader === undefined ? null : Number(lengthHeader);
  let totalSize: number | null = null;
  let skip = 0;
  if (status === 206) {
    const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(String(response.headers['content-range'] ?? ''));
    if (!m || Number(m[1]) !== start) {
      stream.destroy();
      throw new DownloadError('badResponse', `${url.host} answered a range request with Content-Range '${response.headers['content-range'] ?? ''}', expected bytes ${start}-`, true);
    }
    totalSize = m[3] === '*' ? null : Number(m[3]);
  } else {
    totalSize = length !== null && Number.isFinite(length) ? length : null;
    skip = start;
  }
  const body = networkErrorsNamed(stream as AsyncIterable<Buffer>, url);
  return { body: skip > 0 ? skipBytes(body, skip) : body, totalSize, destroy: () => stream.destroy() };
}

/** A connection that breaks in the middle is a transient DownloadError, worth resuming. */
async function* networkErrorsNamed(stream: AsyncIterable<Buffer>, url: URL): AsyncIterable<Buffer> {
  try {
    yield* stream;
  } catch (err) {
    if (err instanceof DownloadError) throw err;
    throw new DownloadError('networkError', `the download from ${url.host} broke off: ${(err as Error).message}`, true);
  }
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

function toDownloadError(err: unknown, url: URL): DownloadError {
  if (err instanceof DownloadError) return err;
  const e = err as AxiosError;
  if (e.cause instanceof DownloadError) return e.cause;
  const code = e.code ?? (e.cause as NodeJS.ErrnoException | undefined)?.code;
  const tlsRefusal = typeof code === 'string' && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code);
  return new DownloadError(
    'networkError',
    `cannot download from ${url.host}: ${e.message}${code && !e.message.includes(code) ? ` (${code})` : ''}`,
    !tlsRefusal,
  );
}
