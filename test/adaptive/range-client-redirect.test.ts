import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RangeRefused, rangeClient } from '../../src/adaptive/range-client.js';
import { startTestFileServer, type TestFileServer } from '../helpers/https-file-server.js';
import { startConnectProxy, type TestConnectProxy } from '../download/connect-proxy.js';

// A bundle URL that redirects (a mirror to its CDN, a release page to signed storage): the ranges
// follow it as the full download does (https only, at most 5), and only the first pays the redirect.
let dir: string;
let server: TestFileServer;
let proxy: TestConnectProxy;
let file: Buffer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'piota-range-redirect-'));
  server = await startTestFileServer();
  proxy = await startConnectProxy();
  file = Buffer.alloc(256 * 1024);
  for (let i = 0; i < file.length; i++) file[i] = (i * 31 + (i >> 8)) & 0xff;
  await writeFile(join(dir, 'bundle.piota'), file);
  server.add('cdn/bundle.piota', join(dir, 'bundle.piota'));
});
afterAll(async () => {
  await proxy.close();
  await server.close();
  await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  server.requests.length = 0;
  server.faults.redirectNext = undefined;
  proxy.tunnels.length = 0;
});

describe('Range requests to a bundle URL that redirects', () => {
  it('follow the redirect, then ask the new address directly, the bytes exact', async () => {
    server.faults.redirectNext = { count: 1, location: server.url('cdn/bundle.piota') };
    const client = rangeClient({ url: server.url('mirror/bundle.piota'), ca: server.ca, proxy: null, connections: 1 });
    try {
      for (let i = 0; i < 5; i++) expect((await client.fetch(i * 10_000, i * 10_000 + 999)).equals(file.subarray(i * 10_000, i * 10_000 + 999))).toBe(true);
    } finally {
      client.close();
    }
    expect(server.requests.map((r) => r.path)).toEqual(['mirror/bundle.piota', ...Array(5).fill('cdn/bundle.piota')]);
    expect(server.requests.every((r) => r.range !== undefined)).toBe(true);
  });

  it('through the proxy too (307, a relative Location)', async () => {
    server.faults.redirectNext = { count: 1, location: '/cdn/bundle.piota', status: 307 };
    const client = rangeClient({ url: server.url('mirror/bundle.piota'), ca: server.ca, proxy: proxy.url });
    try {
      expect((await client.fetch(100, 200)).equals(file.subarray(100, 200))).toBe(true);
    } finally {
      client.close();
    }
    expect(proxy.tunnels.length).toBeGreaterThan(0);
  });

  it('a redirect to http, or more than 5, is refused (RangeRefused: the full download decides)', async () => {
    server.faults.redirectNext = { count: 1, location: `http://localhost:${server.port}/cdn/bundle.piota` };
    const plain = rangeClient({ url: server.url('mirror/bundle.piota'), ca: server.ca, proxy: null });
    await expect(plain.fetch(0, 10)).rejects.toThrow(RangeRefused);
    plain.close();

    server.faults.redirectNext = { count: 6, location: server.url('loop/bundle.piota') };
    const loop = rangeClient({ url: server.url('mirror/bundle.piota'), ca: server.ca, proxy: null });
    const err = await loop.fetch(0, 10).catch((e: unknown) => e);
    loop.close();
    expect(err).toBeInstanceOf(RangeRefused);
    expect((err as Error).message).toContain('more than 5 times');
    expect(server.requests.length).toBe(1 + 6);
  });
});
