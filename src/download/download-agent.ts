import { request as httpRequest, type ClientRequestArgs } from 'node:http';
import { Agent } from 'node:https';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { DownloadError } from './errors.js';
import { proxyFor, redact, type ProxySetting } from './proxy.js';
import { trustContext, trustedCas } from './trust.js';

export interface DownloadAgentOptions {
  /** PEM of a CA to trust besides the system's roots (a private file server). */
  extraCa?: string;
  /** See ProxySetting: a proxy URL, null for none, undefined for the environment's. */
  proxy?: ProxySetting;
  /** How long the proxy may take to open a tunnel. */
  connectTimeoutMs: number;
  /** The environment proxies are read from (tests pass their own). */
  env?: NodeJS.ProcessEnv;
}

/**
 * The HTTPS agent of one download: the system's roots plus an extra CA, and, where a proxy applies,
 * an HTTP CONNECT tunnel through it with TLS to the server end to end (the proxy sees only the host
 * name and port). The agent decides per connection, so a redirect to another host is decided again.
 */
export class DownloadAgent extends Agent {
  constructor(private readonly settings: DownloadAgentOptions) {
    // `ca` says what is trusted; `secureContext` is the same list, parsed once (tls uses it first).
    super({ ca: trustedCas(settings.extraCa), secureContext: trustContext(settings.extraCa), keepAlive: false });
  }

  override createConnection(options: ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
    const host = options.hostname ?? options.host ?? 'localhost';
    const port = Number(options.port ?? 443);
    let proxy: URL | null;
    try {
      proxy = proxyFor(host, port, this.settings.proxy, this.settings.env);
    } catch (err) {
      // Thrown from here it would escape the request; given to the callback it fails the request.
      process.nextTick(() => callback?.(err as Error, undefined as unknown as Duplex));
      return undefined;
    }
    if (!proxy) return super.createConnection(options, callback);
    openTunnel(proxy, host, port, this.settings.connectTimeoutMs).then(
      (socket) => callback?.(null, tlsConnect({ ...(options as ConnectionOptions), socket })),
      (err: unknown) => callback?.(err as Error, undefined as unknown as Duplex),
    );
    return undefined;
  }
}

/** Asks the proxy for a raw TCP tunnel to host:port (HTTP CONNECT) and gives back its socket. */
export function openTunnel(proxy: URL, host: string, port: number, timeoutMs: number): Promise<Socket> {
  const target = `${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}`;
  const headers: Record<string, string> = { Host: target };
  if (proxy.username) {
    const credentials = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
    headers['Proxy-Authorization'] = `Basic ${Buffer.from(credentials).toString('base64')}`;
  }
  const name = redact(proxy);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: proxy.hostname.replace(/^\[|\]$/g, ''), port: Number(proxy.port || 80), method: 'CONNECT', path: target, headers, agent: false });
    req.setTimeout(timeoutMs, () => req.destroy(new DownloadError('proxyError', `the proxy ${name} did not open a tunnel to ${target} within ${timeoutMs / 1000} s`, true)));
    req.once('connect', (res, socket, head) => {
      req.setTimeout(0);
      const status = res.statusCode ?? 0;
      if (status < 200 || status >= 300) {
        socket.destroy();
        reject(refusal(name, target, status));
        return;
      }
      // A proxy speaks only after the client's first TLS bytes; anything already here belongs to the server.
      if (head.length > 0) socket.unshift(head);
      resolve(socket);
    });
    req.once('error', (err) => {
      if (err instanceof DownloadError) reject(err);
      else reject(new DownloadError('proxyError', `cannot reach the proxy ${name}: ${err.message}`, true));
    });
    req.end();
  });
}

function refusal(proxy: string, target: string, status: number): DownloadError {
  if (status === 407) {
    return new DownloadError('proxyError', `the proxy ${proxy} wants credentials for the tunnel to ${target} (HTTP 407); give them in the proxy URL (http://user:password@host:port)`, false);
  }
  // 502/503/504: the proxy could not reach the server just now; 4xx: it refuses this tunnel.
  const transient = status === 429 || status >= 500;
  return new DownloadError('proxyError', `the proxy ${proxy} refused the tunnel to ${target} (HTTP ${status})`, transient);
}
