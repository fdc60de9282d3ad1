import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { openDownload, DownloadError } from '../../src/download/https-source.js';
import { startTestFileServer, type TestFileServer } from '../helpers/https-file-server.js';

// Small figures so each case ends well within a second: the server throttles to 20 kB/s.
let server: TestFileServer;
const content = randomBytes(300_000);
const small = randomBytes(60_000);

async function drain(body: AsyncIterable<Buffer>, perChunk?: (n: number) => Promise<void>): Promise<number> {
  let n = 0;
  for await (const c of body) {
    n += c.length;
    await perChunk?.(n);
  }
  return n;
}

beforeAll(async () => {
  server = await startTestFileServer();
  const dir = await mkdtemp(join(tmpdir(), 'piota-limits-'));
  await writeFile(join(dir, 'f.bin'), content);
  server.add('f.bin', join(dir, 'f.bin'));
  await writeFile(join(dir, 'small.bin'), small);
  server.add('small.bin', join(dir, 'small.bin'));
});
afterAll(() => server.close());
afterEach(() => {
  for (const key of Object.keys(server.faults)) delete server.faults[key as keyof typeof server.faults];
});

describe('download limits', () => {
  it('deadlineMs ends a slow body with deadlineExceeded and the figures', async () => {
    server.faults.bytesPerSecond = 20_000;
    const began = Date.now();
    const r = await openDownload({ url: server.url('f.bin'), ca: server.ca, deadlineMs: 400 });
    const err = await drain(r.body).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DownloadError);
    expect(err).toMatchObject({ code: 'deadlineExceeded', transient: true });
    // Under load the deadline may pass before the first byte: "(0 bytes received)".
    expect((err as Error).message).toMatch(new RegExp(`did not finish within 0.4 s \\((\\d+ of ${content.length}|0) bytes received\\)`));
    expect(Date.now() - began).toBeLessThan(1500);
  });

  it('a limit that trips before the caller reads ends the body with it when the caller does', async () => {
    server.faults.bytesPerSecond = 20_000;
    const r = await openDownload({ url: server.url('f.bin'), ca: server.ca, deadlineMs: 150 });
    await sleep(400);
    await expect(drain(r.body)).rejects.toMatchObject({ code: 'deadlineExceeded' });
  });

  it('deadlineMs also covers a server that is slow to answer at all', async () => {
    server.faults.delayHeadersMs = 2000;
    const began = Date.now();
    const err = await openDownload({ url: server.url('f.bin'), ca: server.ca, deadlineMs: 300 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'deadlineExceeded', transient: true });
    expect(Date.now() - began).toBeLessThan(1500);
  });

  it('minSpeed ends a download whose average over the window falls below, with tooSlow and the figures', async () => {
    server.faults.bytesPerSecond = 20_000;
    const r = await openDownload({ url: server.url('f.bin'), ca: server.ca, minSpeed: { bytesPerSecond: 100_000, windowMs: 300 } });
    const err = await drain(r.body).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'tooSlow', transient: true });
    expect((err as Error).message).toMatch(/averaged \d+ bytes\/s over the last 0\.\d s, below the minimum of 100000 bytes\/s \(\d+ bytes received\)/);
    const speed = Number(/averaged (\d+)/.exec((err as Error).message)![1]);
    expect(speed).toBeLessThan(100_000);
  });

  it('minSpeed lets a download at 5 times the minimum finish, judged over several windows', async () => {
    server.faults.bytesPerSecond = 100_000; // 60 kB: some 600 ms, three windows of 200 ms
    const r = await openDownload({ url: server.url('small.bin'), ca: server.ca, minSpeed: { bytesPerSecond: 20_000, windowMs: 200 } });
    expect(await drain(r.body)).toBe(small.length);
  });

  it('a slow consumer is not a slow server: pauses of the caller do not count against minSpeed', async () => {
    const r = await openDownload({ url: server.url('f.bin'), ca: server.ca, minSpeed: { bytesPerSecond: 200_000, windowMs: 150 }, idleTimeoutMs: 150 });
    // Each pause is longer than the window and the idle timeout: on wall time this would be 0 bytes/s.
    const got = await drain(r.body, async (n) => {
      if (n < 60_000) await sleep(250);
    });
    expect(got).toBe(content.length);
  });

  it('idleTimeoutMs ends a body that stops arriving, as a transient networkError', async () => {
    server.faults.stallAfterBytes = 50_000;
    const r = await openDownload({ url: server.url('f.bin'), ca: server.ca, idleTimeoutMs: 300 });
    const err = await drain(r.body).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'networkError', transient: true });
    expect((err as Error).message).toMatch(/no data from localhost:\d+ for 0.3 s \(\d+ bytes received\)/);
  });
});
