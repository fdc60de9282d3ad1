import { DownloadError } from './errors.js';

/**
 * Which proxy a download goes through: a URL (http://[user:password@]host:port) for every host,
 * null for none, undefined to follow the environment (https_proxy / HTTPS_PROXY, no_proxy / NO_PROXY).
 */
export type ProxySetting = string | null | undefined;

/**
 * The proxy to reach host:port through, or null to connect directly. Decided per connection, so a
 * redirect to another host is matched against NO_PROXY again.
 */
export function proxyFor(host: string, port: number, setting: ProxySetting, env: NodeJS.ProcessEnv = process.env): URL | null {
  if (setting === null) return null;
  if (setting !== undefined) return parseProxyUrl(setting, 'the proxy option');
  // Lower case first, as curl and wget read them; an empty value counts as unset.
  const fromEnv = env.https_proxy || env.HTTPS_PROXY;
  if (!fromEnv) return null;
  const noProxy = env.no_proxy ?? env.NO_PROXY ?? '';
  if (bypasses(host, port, noProxy)) return null;
  return parseProxyUrl(fromEnv, env.https_proxy ? 'https_proxy' : 'HTTPS_PROXY');
}

/**
 * NO_PROXY is a list (commas or spaces) of: `*` (every host), host names, which match themselves
 * and their subdomains (`example.com` and `.example.com` both match `cdn.example.com`), and IP
 * addresses, which match exactly; each may end in `:port` to match that port only. No CIDR ranges.
 */
export function bypasses(host: string, port: number, noProxy: string): boolean {
  const target = unbracket(host.toLowerCase()).replace(/\.$/, '');
  for (const raw of noProxy.toLowerCase().split(/[\s,]+/)) {
    if (raw === '') continue;
    if (raw === '*') return true;
    const [name, entryPort] = splitPort(raw);
    if (entryPort !== undefined && entryPort !== port) continue;
    const domain = name.replace(/^\*?\./, '').replace(/\.$/, '');
    if (domain === '') continue;
    if (target === domain || target.endsWith(`.${domain}`)) return true;
  }
  return false;
}

/** `host:port`, `[v6]:port`, or a bare IPv6 address (colons of its own, so no port). */
function splitPort(entry: string): [string, number | undefined] {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
  if (bracketed) return [bracketed[1], bracketed[2] === undefined ? undefined : Number(bracketed[2])];
  const parts = entry.split(':');
  if (parts.length === 2 && /^\d+$/.test(parts[1])) return [parts[0], Number(parts[1])];
  return [entry, undefined];
}

function unbracket(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

function parseProxyUrl(raw: string, source: string): URL {
  let url: URL;
  try {
    // curl takes "host:port" as http://host:port; so do we.
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`);
  } catch {
    throw new DownloadError('proxyError', `${source} ('${raw}') is not a proxy URL (http://host:port)`, false);
  }
  if (url.protocol !== 'http:') {
    throw new DownloadError('proxyError', `${source} ('${redact(url)}') must be an http:// proxy URL: the tunnel to it is plain HTTP CONNECT, and TLS runs inside it to the server`, false);
  }
  return url;
}

/** The proxy URL without its password, for messages and logs. */
export function redact(url: URL): string {
  return `${url.protocol}//${url.username ? `${decodeURIComponent(url.username)}:***@` : ''}${url.host}`;
}
