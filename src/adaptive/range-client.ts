import type { ClientRequestArgs } from 'node:http';
import { Agent, request, type RequestOptions } from 'node:https';
import type { Duplex } from 'node:stream';
import { DownloadAgent } from '../download/download-agent.js';
import type { ProxySetting } from '../download/proxy.js';
import { trustContext, trustedCas } from '../download/trust.js';

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
  /** An extra CA to trust besides the system's roots (the device's downloadCaFile), as for the full download. */
  ca?: string;
  /** The download's proxy (`download.proxy`): a URL, null for none, undefined for HTTPS_PROXY / NO_PROXY. */
  proxy?: ProxySetting;
  /** The environment the proxy is read from when `proxy` is undefined (tests pass their own). */
  env?: NodeJS.ProcessEnv;
  /** The validator of the bundle as first fetched (ETag or Last-Modified): sent as If-Range. */
  validator?: string | null;
  /** Connections used at once (default 4). */
  connections?: number;
  idleTimeoutMs?: number;
}

/** As the full download: at most this many redirects, to https only. */
const MAX_REDIRECTS = 5;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export function rangeClient(options: RangeClientOptions): RangeFetcher {
  // Where the ranges go: the bundle URL, or where it redirected (a mirror to its CDN), kept for the
  // next ranges so that only the first pays the redirect.
  let url = new URL(options.url);
  if (url.protocol !== 'https:') throw new RangeRefused(`adaptive downloads use https only, not ${url.protocol}`);
  const idleTimeoutMs = options.idleTimeoutMs ?? 30_000;
  const connections = options.connections ?? 4;
  const agent = new RangeAgent(connections, new DownloadAgent({ extraCa: options.ca, proxy: options.proxy, connectTimeoutMs: idleTimeoutMs, env: options.env }), options.ca);
  // Node's agent counts a connection only once it is open, so while tunnels are being opened every
  // request would open one more: the client itself keeps at most `connections` requests in flight.
  const inFlight = new InFlightLimit(connections);
  let bytesFetched = 0;
  const fetch = (start: number, end: number, signal?: AbortSignal): Promise<Buffer> => inFlight.run(() => fetchFollowing(start, end, signal));
  const fetchFollowing = async (start: number, end: number, signal?: AbortSignal): Promise<Buffer> => {
    for (let redirects = 0; ; redirects++) {
      const from = url;
      const answer = await fetchOne(from, start, end, signal);
      if (Buffer.isBuffer(answer)) return answer;
      const next = new URL(answer.location, from);
      if (next.protocol !== 'https:') throw new RangeRefused(`the bundle URL redirected to a non-https address (${next.host}); only https is followed`);
      if (redirects + 1 > MAX_REDIRECTS) throw new RangeRefused(`the bundle URL redirected more than ${MAX_REDIRECTS} times, last to ${next.host}${next.pathname}`);
      url = next;
    }
  };
  const fetchOne = (target: URL, start: number, end: number, signal?: AbortSignal): Promise<Buffer | { location: string }> =>
    new Promise<Buffer | { location: string }>((resolve, reject) => {
      const headers: Record<string, string> = { Range: `bytes=${start}-${end - 1}`, 'Accept-Encoding': 'identity' };
      if (options.validator) headers['If-Range'] = options.validator;
      const req = request(target, { agent, headers, signal, timeout: idleTimeoutMs }, (res) => {
        const location = res.headers.location;
        if (REDIRECTS.has(res.statusCode ?? 0) && location) {
          res.resume();
          resolve({ location });
          return;
        }
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

/**
 * Kept-alive connections, at most `maxSockets` at once, each opened the way the full download opens
 * its one: the same trust (system roots plus the extra CA) and, where the proxy setting applies, a
 * CONNECT tunnel with TLS to the server end to end. DownloadAgent itself closes each connection after
 * its request (one long GET needs no pool); hundreds of ranges do, so the pool is this agent's and
 * only the opening of a connection is DownloadAgent's.
 */
class RangeAgent extends Agent {
  constructor(
    maxSockets: number,
    private readonly opener: DownloadAgent,
    extraCa: string | undefined,
  ) {
    super({ keepAlive: true, maxSockets, ca: trustedCas(extraCa), secureContext: trustContext(extraCa) });
  }

  override createConnection(options: ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
    return this.opener.createConnection(options, callback);
  }

  // One agent, one trust setting: the pool's key leaves out the CA list, which node's https agent
  // would otherwise join into the key (some 150 roots, 200 KiB) at every call: measured, 3 s of CPU
  // and 365 MB of strings for the 556 ranges of the release pair.
  override getName(options?: RequestOptions): string {
    return super.getName({ ...options, ca: undefined });
  }

  override destroy(): void {
    super.destroy();
    this.opener.destroy();
  }
}

/** At most `size` tasks at once; the others wait their turn in order. */
class InFlightLimit {
  private free: number;
  private readonly waiting: (() => void)[] = [];

  constructor(size: number) {
    this.free = size;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    }
  }
}
