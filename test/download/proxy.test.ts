import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDownload } from '../../src/download/https-source.js';
import { bypasses, proxyFor } from '../../src/download/proxy.js';
import { startTestFileServer, type TestFileServer } from '../helpers/https-file-server.js';
import { startConnectProxy, type TestConnectProxy } from './connect-proxy.js';

let server: TestFileServer;
let proxy: TestConnectProxy;
const content = randomBytes(100_000);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const PROXY_VARS = ['https_proxy', 'HTTPS_PROXY', 'no_proxy', 'NO_PROXY'];
const saved = Object.fromEntries(PROXY_VARS.map((k) => [k, process.env[k]]));

async function collect(body: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of body) parts.push(c);
  return Buffer.concat(parts);
}

/** A loopback port with nothing listening (bound, then closed). */
async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

beforeAll(async () => {
  server = await startTestFileServer();
  proxy = await startConnectProxy();
  const dir = await mkdtemp(join(tmpdir(), 'piota-proxy-'));
  await writeFile(join(dir, 'f.bin'), content);
  server.add('f.bin', join(dir, 'f.bin'));
});
afterAll(async () => {
  await proxy.close();
  await server.close();
});
afterEach(() => {
  // This file runs in its own worker; the environment is put back after each case all the same.
  for (const k of PROXY_VARS) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
  proxy.refuseWith = undefined;
});

function clearProxyEnv(): void {
  for (const k of PROXY_VARS) delete process.env[k];
}

describe('downloads through an HTTPS proxy (HTTP CONNECT)', () => {
  it('HTTPS_PROXY: one tunnel to the server, TLS end to end, the file intact', async () => {
    clearProxyEnv();
    process.env.HTTPS_PROXY = proxy.url;
    const before = proxy.tunnels.length;
    const r = await openDownload({ url: server.url('f.bin'), ca: server.ca });
    expect(sha(await collect(r.body))).toBe(sha(content));
    expect(proxy.tunnels.slice(before)).toEqual([`localhost:${server.port}`]);
  });

  it('https_proxy (lower case) wins over HTTPS_PROXY, as in curl', async () => {
    clearProxyEnv();
    process.env.https_proxy = proxy.url;
    process.env.HTTPS_PROXY = `http://127.0.0.1:${await deadPort()}`;
    const before = proxy.tunnels.length;
    const r = await openDownload({ url: server.url('f.bin'), ca: server.ca });
    await collect(r.body);
    expect(proxy.tunnels.length - before).toBe(1);
  });

  it('NO_PROXY bypasses the proxy for a matching host', async () => {
    clearProxyEnv();
    process.env.HTTPS_PROXY = proxy.url;
    process.env.NO_PROXY = 'example.com, localhost';
    const before = proxy.tunnels.length;
    const r = await openDownload({ url: server.url('f.bin'), ca: server.ca });
    expect(sha(await collect(r.body))).toBe(sha(content));
    expect(proxy.tunnels.length).toBe(before);
  });

  it('an explicit proxy option overrides the environment (null: no proxy; a URL: that one)', async () => {
    clearProxyEnv();
    process.env.HTTPS_PROXY = `http://127.0.0.1:${await deadPort()}`;
    const before = proxy.tunnels.length;
    const direct = await openDownload({ url: server.url('f.bin'), ca: server.ca, proxy: null });
    await collect(direct.body);
    expect(proxy.tunnels.length).toBe(before);
    const via = await openDownload({ url: server.url('f.bin'), ca: server.ca, proxy: proxy.url });
    await collect(via.body);
    expect(proxy.tunnels.length).toBe(before + 1);
  });

  it('sends the credentials of the proxy URL as Proxy-Authorization', async () => {
    const url = proxy.url.replace('http://', 'http://fleet:s%3Acret@');
    const r = await openDownload({ url: server.url('f.bin'), ca: server.ca, proxy: url });
    await collect(r.body);
    expect(proxy.authorizations.at(-1)).toBe(`Basic ${Buffer.from('fleet:s:cret').toString('base64')}`);
  });

  it('still checks the server certificate through the tunnel', async () => {
    const err = await openDownload({ url: server.url('f.bin'), proxy: proxy.url }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'tlsError', transient: false });
  });

  it('names a proxy that refuses or cannot be reached, and says whether to retry', async () => {
    proxy.refuseWith = 407;
    const auth = await openDownload({ url: server.url('f.bin'), ca: server.ca, proxy: proxy.url }).catch((e: unknown) => e);
    expect(auth).toMatchObject({ code: 'proxyError', transient: false });
    expect((auth as Error).message).toMatch(/wants credentials .*HTTP 407/);
    proxy.refuseWith = 502;
    const gateway = await openDownload({ url: server.url('f.bin'), ca: server.ca, proxy: proxy.url }).catch((e: unknown) => e);
    expect(gateway).toMatchObject({ code: 'proxyError', transient: true });
    const port = await deadPort();
    const down = await openDownload({ url: server.url('f.bin'), ca: server.ca, proxy: `http://127.0.0.1:${port}` }).catch((e: unknown) => e);
    expect(down).toMatchObject({ code: 'proxyError', transient: true });
    expect((down as Error).message).toContain(`cannot reach the proxy http://127.0.0.1:${port}`);
  });

  it('refuses a proxy URL it cannot use, naming the variable', async () => {
    clearProxyEnv();
    process.env.HTTPS_PROXY = 'socks5://127.0.0.1:1080';
    const err = await openDownload({ url: server.url('f.bin'), ca: server.ca }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'proxyError', transient: false });
    expect((err as Error).message).toMatch(/HTTPS_PROXY \('socks5:\/\/127.0.0.1:1080'\) must be an http:\/\/ proxy URL/);
  });
});

describe('proxyFor and NO_PROXY', () => {
  const env = { HTTPS_PROXY: 'http://proxy.corp:3128' };
  it('reads HTTPS_PROXY, takes host:port as http://, and hides a password in messages', () => {
    expect(proxyFor('cdn.example.com', 443, undefined, env)?.href).toBe('http://proxy.corp:3128/');
    expect(proxyFor('cdn.example.com', 443, undefined, { https_proxy: 'proxy.corp:8080' })?.href).toBe('http://proxy.corp:8080/');
    expect(proxyFor('cdn.example.com', 443, undefined, {})).toBeNull();
    expect(proxyFor('cdn.example.com', 443, undefined, { HTTPS_PROXY: '' })).toBeNull();
    expect(() => proxyFor('a', 443, 'https://u:secret@p:1', {})).toThrow(/'https:\/\/u:\*\*\*@p:1'/);
  });

  it('matches hosts, subdomains, IP addresses, ports and *', () => {
    expect(bypasses('cdn.example.com', 443, 'example.com')).toBe(true);
    expect(bypasses('cdn.example.com', 443, '.example.com')).toBe(true);
    expect(bypasses('example.com', 443, '.example.com')).toBe(true);
    expect(bypasses('notexample.com', 443, 'example.com')).toBe(false);
    expect(bypasses('CDN.Example.COM', 443, 'example.com')).toBe(true);
    expect(bypasses('mirror.lan', 8443, 'mirror.lan:8443')).toBe(true);
    expect(bypasses('mirror.lan', 443, 'mirror.lan:8443')).toBe(false);
    expect(bypasses('10.1.2.3', 443, '10.1.2.3')).toBe(true);
    expect(bypasses('110.1.2.3', 443, '10.1.2.3')).toBe(false);
    expect(bypasses('::1', 443, '::1')).toBe(true);
    expect(bypasses('[::1]', 443, '[::1]:443')).toBe(true);
    expect(bypasses('anything', 443, 'a.b *')).toBe(true);
    expect(bypasses('anything', 443, '')).toBe(false);
    expect(proxyFor('x.internal', 443, undefined, { ...env, no_proxy: 'internal', NO_PROXY: 'other' })).toBeNull();
  });
});
