import { Agent, request } from 'node:https';

/**
 * Fetches byte ranges of one bundle over HTTPS on a few kept-alive connections. A server that
 * answers anything but 206 with the asked range (it ignores Range, or the file changed and If-Range
 * gave the whole new file) is a RangeRefused: the caller falls back to the full download.
 */
export class RangeRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RangeRefused';
  }
}

export interface RangeFetcher {
  /** Bytes [start, end) of the bundle. */
  fetch(start: number, end: number, signal?: AbortSignal): Promise<Buffer>;
  /** Body bytes received so far (what the device paid for). */
  readonly bytesFetched: number;
  close(): void;
}

export interface RangeClientOptions {
  url: string;
  /** An extra CA to trust (the device's downloadCaFile). */
  ca?: string;
  /** The validator of the bundle as first fetched (ETag or Last-Modified): sent as If-Range. */
  validator?: string | null;
  /** Connections used at once (default 4). */
  connections?: number;
  idleTimeoutMs?: number;
}

export function rangeClient(options: RangeClientOptions): RangeFetcher {
  const url = new URL(options.url);
  if (url.protocol !== 'https:') throw new RangeRefused(`adaptive downloads use https only, not ${url.protocol}`);
  const agent = new Agent({ keepAlive: true, maxSockets: options.connections ?? 4, ca: options.ca });
  let bytesFetched = 0;
  const fetch = (start: number, end: number, signal?: AbortSignal): Promise<Buffer> =>
    new Promise<Buffer>((resolve, reject) => {
      const headers: Record<string, string> = { Range: `bytes=${start}-${end - 1}`, 'Accept-Encoding': 'identity' };
      if (options.validator) headers['If-Range'] = options.validator;
      const req = request(url, { agent, headers, signal, timeout: options.idleTimeoutMs ?? 30_000 }, (res) => {
        const range = res.headers['content-range'] ?? '';
        const m = /^bytes (\d+)-(\d+)\//.exec(range);
        if (res.statusCode !== 206 || !m || Number(m[1]) !== start || Number(m[2]) !== end - 1) {
          res.resume();
          reject(new RangeRefused(`the server answered HTTP ${res.statusCode} '${range}' to Range bytes=${start}-${end - 1}`));
          return;
        }
        const pieces: Buffer[] = [];
        let have = 0;
        res.on('data', (piece: Buffer) => {
          pieces.push(piece);
          have += piece.length;
          bytesFetched += piece.length;
        });
        res.on('end', () => (have === end - start ? resolve(Buffer.concat(pieces)) : reject(new Error(`range ${start}-${end - 1} ended after ${have} bytes`))));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`no answer for range ${start}-${end - 1} within the idle timeout`)));
      req.on('error', reject);
      req.end();
    });
  return {
    fetch,
    get bytesFetched() {
      return bytesFetched;
    },
    close: () => agent.destroy(),
  };
}
