import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { downloadToSlot } from '../../src/agent/download-to-slot.js';
import type { DownloadRequest, DownloadResponse } from '../../src/download/https-source.js';
import { DownloadError } from '../../src/download/errors.js';
import { UpdateRunner } from '../../src/agent/workflow/runner.js';
import { toUpdateError } from '../../src/agent/workflow/update-errors.js';
import { imageBytes, makeBundle, workspace, type Made, type Workspace } from '../bundle/fixtures.js';
import { FakeBoot, FakeClock, MemoryStorage, fakePorts, silentLogger, stateWith, testConfig, updateIn } from './fakes/ports.js';

const config = testConfig({ model: 'raspberrypi4-64' });
const rootfs = config.slots.B.rootfs;

/** An HTTPS source serving `bytes` from memory, recording every request; `faults` misbehave once each. */
function memoryServer(initial: Buffer) {
  let bytes = initial;
  let etag = '"v1"';
  const requests: DownloadRequest[] = [];
  const faults: ((req: DownloadRequest) => DownloadResponse | Error | undefined)[] = [];
  const open = async (req: DownloadRequest): Promise<DownloadResponse> => {
    requests.push(req);
    const fault = faults.shift()?.(req);
    if (fault instanceof Error) throw fault;
    if (fault) return fault;
    const start = req.start ?? 0;
    const changed = start > 0 && req.ifRange !== undefined && req.ifRange !== etag;
    const from = changed ? 0 : start;
    const body = (async function* () {
      for (let at = from; at < bytes.length; at += 1000) yield bytes.subarray(at, Math.min(bytes.length, at + 1000));
    })();
    return { body, totalSize: bytes.length, validator: etag, restartedFromZero: changed, destroy: () => undefined };
  };
  return {
    open,
    requests,
    faults,
    replace(next: Buffer) {
      bytes = next;
      etag = '"v2"';
    },
  };
}

/** A body that breaks off after `after` bytes, as a cut connection does. */
function cutAfter(bytes: Buffer, after: number): DownloadResponse {
  const body = (async function* () {
    yield bytes.subarray(0, after);
    throw new DownloadError('networkError', 'the download broke off: ECONNRESET', true);
  })();
  return { body, totalSize: bytes.length, validator: '"v1"', restartedFromZero: false, destroy: () => undefined };
}

let ws: Workspace;
let made: Made;
const image = imageBytes(40_000, 3);

beforeAll(async () => {
  ws = await workspace();
  made = await makeBundle(ws, 'fw', { rootfs: image }, { compression: 'none' });
});
afterAll(() => ws.remove());

function deps(server: ReturnType<typeof memoryServer>, storage: MemoryStorage, over: { maxChunkBytes?: number; checkpoints?: number[] } = {}) {
  return {
    open: server.open,
    storage,
    trust: { trustedKeys: [made.key.publicKeyPem], model: 'raspberrypi4-64', securityVersion: 0, maxChunkBytes: over.maxChunkBytes },
    targetPartitions: config.slots.B,
    request: {},
    logger: silentLogger,
    checkpoint: async (u: { nextChunk: number }) => void over.checkpoints?.push(u.nextChunk),
    progress: () => undefined,
    signal: new AbortController().signal,
    checkpointIntervalMs: 0,
  };
}

describe('downloadToSlot', () => {
  it('streams the bundle into the slot and checkpoints after each synced chunk', async () => {
    const server = memoryServer(made.bytes);
    const storage = new MemoryStorage(Object.values(config.slots.B), 64 * 1024);
    const update = updateIn('downloading');
    const checkpoints: number[] = [];
    await downloadToSlot(update, deps(server, storage, { checkpoints }));
    expect(storage.partitions.get(rootfs)!.subarray(0, image.length).equals(image)).toBe(true);
    expect(update.nextChunk).toBe(update.bundle!.chunkCount);
    expect(checkpoints.at(-1)).toBe(update.bundle!.chunkCount);
    expect(server.requests).toHaveLength(1);
  });

  it('resumes at the persisted chunk with a Range request carrying If-Range', async () => {
    const server = memoryServer(made.bytes);
    const storage = new MemoryStorage(Object.values(config.slots.B), 64 * 1024);
    const update = updateIn('downloading');
    server.faults.push(() => cutAfter(made.bytes, Math.floor(made.bytes.length * 0.6)));
    await expect(downloadToSlot(update, deps(server, storage))).rejects.toMatchObject({ code: 'networkError', transient: true });
    const resumeAt = update.nextChunk;
    expect(resumeAt).toBeGreaterThan(0);
    await downloadToSlot(update, deps(server, storage));
    const ranged = server.requests.at(-1)!;
    expect(ranged.start).toBeGreaterThan(0);
    expect(ranged.ifRange).toBe('"v1"');
    expect(ranged.expectedTotal).toBe(made.bytes.length);
    expect(storage.partitions.get(rootfs)!.subarray(0, image.length).equals(image)).toBe(true);
  });

  it('a file replaced on the server between the header and the resumed range starts over (fileChanged), never a mix', async () => {
    const other = await makeBundle(ws, 'fw2', { rootfs: imageBytes(40_000, 9) }, { compression: 'none', key: made.key });
    const server = memoryServer(made.bytes);
    const storage = new MemoryStorage(Object.values(config.slots.B), 64 * 1024);
    const update = updateIn('downloading');
    server.faults.push(() => cutAfter(made.bytes, Math.floor(made.bytes.length * 0.6)));
    await expect(downloadToSlot(update, deps(server, storage))).rejects.toMatchObject({ code: 'networkError' });
    // The header request still sees the old file; the file changes before the ranged request.
    const original = server.open;
    let n = 0;
    const sneaky = async (req: DownloadRequest) => {
      if (n++ === 1) server.replace(other.bytes);
      return original(req);
    };
    await expect(downloadToSlot(update, { ...deps(server, storage), open: sneaky })).rejects.toMatchObject({ code: 'fileChanged', transient: true });
    // The retry reads the new header and starts the new file from its first chunk.
    await downloadToSlot(update, deps(server, storage));
    expect(server.requests.at(-1)!.start).toBe(0);
    expect(storage.partitions.get(rootfs)!.subarray(0, 40_000).equals(other.images.rootfs)).toBe(true);
  });

  it('refuses chunks larger than the device accepts before writing a byte (chunkTooLarge)', async () => {
    const server = memoryServer(made.bytes);
    const storage = new MemoryStorage(Object.values(config.slots.B), 64 * 1024);
    const err = await downloadToSlot(updateIn('downloading'), deps(server, storage, { maxChunkBytes: 2048 })).catch((e: unknown) => e);
    expect(toUpdateError(err).code).toBe('chunkTooLarge');
    expect(storage.opened).toEqual([]);
  });

  it('a server that reports another size than the signed manifest is transient network trouble (retried)', async () => {
    const server = memoryServer(made.bytes);
    server.faults.push((req) => ({ ...cutAfter(made.bytes, made.bytes.length), totalSize: made.bytes.length + 5, body: (async function* () { yield made.bytes; })(), validator: null, restartedFromZero: false, destroy: () => undefined, ...{ req } }) as DownloadResponse);
    const storage = new MemoryStorage(Object.values(config.slots.B), 64 * 1024);
    const err = await downloadToSlot(updateIn('downloading'), deps(server, storage)).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'badResponse', transient: true });
    expect(toUpdateError(err).code).toBe('downloadError');
    expect(storage.opened).toEqual([]);
  });
});

describe('the downloading phase: retries', () => {
  function run(server: ReturnType<typeof memoryServer>, attempts = 3, download: Record<string, unknown> = {}) {
    const state = stateWith(updateIn('downloading'));
    const clock = new FakeClock();
    const storage = new MemoryStorage(Object.values(config.slots.B), 64 * 1024);
    const runner = new UpdateRunner({
      state,
      saveState: async () => undefined,
      statusChanged: () => undefined,
      refreshInventory: async () => undefined,
      logger: silentLogger,
      settings: { config: testConfig({ download: { retry: { attempts, firstDelaySeconds: 1, maxDelaySeconds: 4 }, ...download } }), trustedKeys: [made.key.publicKeyPem] },
      ports: fakePorts({
        boot: new FakeBoot(),
        clock,
        storage,
        http: server.open,
        // The window stays shut: the update stops in downloadComplete, where these tests look at it.
        applyWindowOpen: (_u, signal) => new Promise((_r, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
      }),
    });
    return { state, clock, runner, storage };
  }
  async function settle(r: ReturnType<typeof run>) {
    r.runner.start(false);
    const deadline = Date.now() + 10_000; // real time: the first dynamic import of the download stack is slow
    while (r.state.update!.phase === 'downloading' && Date.now() < deadline) await new Promise((res) => setImmediate(res));
    await r.runner.stop();
  }

  it('retries transient trouble with growing, jittered delays, then completes', async () => {
    const server = memoryServer(made.bytes);
    server.faults.push(() => new DownloadError('httpError', 'fw.example answered HTTP 503', true));
    server.faults.push(() => cutAfter(made.bytes, 5000));
    const r = run(server);
    await settle(r);
    expect(r.state.update!.phase).toBe('downloadComplete');
    expect(r.clock.naps).toHaveLength(2);
    expect(r.clock.naps[0]).toBeGreaterThanOrEqual(500);
    expect(r.clock.naps[0]).toBeLessThanOrEqual(1000);
    expect(r.clock.naps[1]).toBeGreaterThanOrEqual(1000);
    expect(r.clock.naps[1]).toBeLessThanOrEqual(2000);
  });

  it('passes fractional seconds from the config as whole milliseconds (1.1 s is not 1100.0000000000002 ms)', async () => {
    const server = memoryServer(made.bytes);
    const r = run(server, 3, { idleTimeoutSeconds: 1.1, deadlineSeconds: 4.1 });
    await settle(r);
    expect(r.state.update!.phase).toBe('downloadComplete');
    expect(server.requests[0]).toMatchObject({ idleTimeoutMs: 1100, deadlineMs: 4100 });
  });

  it('gives up after the configured attempts with downloadError', async () => {
    const server = memoryServer(made.bytes);
    for (let i = 0; i < 3; i++) server.faults.push(() => new DownloadError('networkError', 'ECONNREFUSED', true));
    const r = run(server);
    await settle(r);
    expect(r.state.update).toMatchObject({ phase: 'downloadFailed', error: { code: 'downloadError' } });
    expect(r.clock.naps).toHaveLength(2);
  });

  it.each([
    ['notHttps', new DownloadError('notHttps', 'redirected to http://cdn.example/fw', false)],
    ['tlsError', new DownloadError('tlsError', 'the certificate of fw.example is not for that name', false)],
    ['downloadError', new DownloadError('httpError', 'fw.example answered HTTP 404 for /fw', false)],
  ])('a permanent refusal is not retried: %s', async (code, err) => {
    const server = memoryServer(made.bytes);
    server.faults.push(() => err);
    const r = run(server);
    await settle(r);
    expect(r.state.update).toMatchObject({ phase: 'downloadFailed', error: { code } });
    expect(r.clock.naps).toEqual([]);
  });
});
