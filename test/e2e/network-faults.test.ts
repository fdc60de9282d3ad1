import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { readBundleFileHeader } from '../../src/bundle/inspect.js';
import { parseAutoboot } from '../../src/boot/autoboot.js';
import { startTestFileServer, type TestFileServer } from '../helpers/https-file-server.js';
import { World, waitFor, type SimJson, type SimulatedPi, type StatusJson } from './world.js';
import { reportedStatuses, statusPathViolations, TERMINAL } from './invariants.js';
import { FIRST_REQUEST_BYTES } from '../../src/agent/bundle-stream.js';

// Network faults end to end: the real daemon (`piota simulate` around it), the hub emulator, and the
// test HTTPS server misbehaving on purpose. Each case triggers an update as a service would and
// judges it from outside: the twin's status and error code, the board (booted and committed slot,
// autoboot.txt, the reported version) and the slot files' bytes. A failure must leave the boot as it
// was; a success must have the image intact in the new slot, whatever the server did on the way.
//
// Several cases run on one simulated Pi, one update after the other. Timeouts and retry delays are
// short (fractions of a second) so the whole file stays fast; a resume needs the daemon to have
// persisted a position first, which it does every 2 s of download, so the cases that cut a download
// to see it resumed throttle that first response for a few seconds.

const FAST_DOWNLOADS = {
  download: { idleTimeoutSeconds: 1, retry: { attempts: 4, firstDelaySeconds: 0.05, maxDelaySeconds: 0.2 } },
};
/**
 * 256 KiB of rootfs in 16 KiB chunks: small, but enough chunks to cut one in the middle. Format 1:
 * these cases are about the full download request by request (a cut at 90 % of the file lands in a
 * chunk; no Range requests of an adaptive attempt among the counted ones); adaptive downloads under
 * faults are test/e2e/adaptive-updates.test.ts.
 */
const IMAGE = { rootfsBytes: 256 * 1024, bootBytes: 16 * 1024, chunkSize: 16 * 1024, formatVersion: 1 };
/** Slow enough that the daemon persists a position (every 2 s) well before the cut near the end. */
const RESUME_BYTES_PER_SECOND = 80 * 1024;
const isRoot = process.getuid?.() === 0;

let world: World;
const timings: string[] = [];
beforeAll(async () => {
  world = await World.create();
}, 60_000);
afterAll(async () => {
  console.log(`network-faults timings:\n  ${timings.join('\n  ')}`);
  await world?.close();
});

/** Runs a case and notes how long it took (printed at the end). */
function timed(name: string, fn: () => Promise<void>, timeoutMs = 60_000): [string, () => Promise<void>, number] {
  return [
    name,
    async () => {
      const t0 = Date.now();
      try {
        await fn();
      } finally {
        timings.push(`${((Date.now() - t0) / 1000).toFixed(1)} s  ${name}`);
      }
    },
    timeoutMs,
  ];
}

interface Bundle {
  name: string;
  url: string;
  path: string;
  version: string;
  rootfs: Buffer;
  boot: Buffer;
}

async function bundle(name: string, version: string, sizes: Partial<typeof IMAGE> = {}): Promise<Bundle> {
  return { name, ...(await world.bundle(name, { version, ...IMAGE, ...sizes })) };
}

const requestsFor = (name: string) => world.files.requests.filter((r) => r.path === name);
const rangeStart = (range: string | undefined) => (range === undefined ? 0 : Number(/^bytes=(\d+)-/.exec(range)?.[1]));
/**
 * Where each resume asked to start. Every attempt asks for the header first (bytes 0 to
 * FIRST_REQUEST_BYTES - 1) and then for the rest from FIRST_REQUEST_BYTES on; a resume asks from
 * the chunk it resumes at instead.
 */
const resumes = (name: string) => requestsFor(name).map((r) => rangeStart(r.range)).filter((start) => start > 0 && start !== FIRST_REQUEST_BYTES);

/** What "the boot untouched" compares against: the board and the twin before the update. */
interface Before {
  sim: SimJson;
  status: StatusJson;
  version: string;
  patchesFrom: number;
}

async function before(pi: SimulatedPi): Promise<Before> {
  const twin = await world.reported(pi.deviceId);
  return { sim: await pi.sim(), status: await pi.status(), version: twin.iothubDM.firmwareVersion, patchesFrom: world.reportedPatches(pi.deviceId).length };
}

async function trigger(pi: SimulatedPi, url: string): Promise<string> {
  const answer = await world.invoke(pi.deviceId, 'firmwareUpdate', { fwPackageUri: url });
  expect(answer.status, JSON.stringify(answer.payload)).toBe(200);
  return answer.payload.updateId as string;
}

/**
 * Triggers with the first response for `name` sent at `bytesPerSecond` (the server reads the rate
 * when a response starts), and every later one at full speed.
 */
/**
 * Triggers `b` with the server slow for the first attempt's requests (`requests`: the header and the
 * rest, or 1 when the server answers the whole file at once), so that a checkpoint lands before a cut.
 */
async function triggerSlowFirst(pi: SimulatedPi, b: Bundle, bytesPerSecond: number, requests = 2): Promise<string> {
  const seen = requestsFor(b.name).length;
  world.files.faults.bytesPerSecond = bytesPerSecond;
  try {
    const updateId = await trigger(pi, b.url);
    await waitFor(`the first attempt's requests for ${b.name}`, async () => requestsFor(b.name).length >= seen + requests, 20_000);
    return updateId;
  } finally {
    world.files.faults.bytesPerSecond = undefined;
  }
}

/** Waits for the end of the update on the twin, and for the device to have settled (no update in progress). */
async function ended(pi: SimulatedPi, updateId: string, timeoutMs = 45_000): Promise<{ fu: Record<string, any>; status: StatusJson }> {
  const twin = await world.waitForUpdate(pi.deviceId, updateId, (fu) => TERMINAL.includes(fu.status), timeoutMs);
  const status = await waitFor(`${pi.deviceId} to settle after ${updateId}`, async () => {
    const s = await pi.status();
    const t = await world.reported(pi.deviceId);
    const settled = s.update === null && s.lastResult?.updateId === updateId && t.iothubDM?.firmwareVersion === s.runningVersion && t.piota?.bootedSlot === s.bootedSlot;
    return settled ? s : undefined;
  }, 30_000);
  return { fu: twin.iothubDM.firmwareUpdate, status };
}

/** The statuses the twin showed for this update, in order, must be a path of the workflow. */
function expectStatusPath(pi: SimulatedPi, b: Before, updateId: string): string[] {
  const { statuses } = reportedStatuses(world.reportedPatches(pi.deviceId).slice(b.patchesFrom), updateId);
  expect(statusPathViolations(statuses), statuses.join(' → ')).toEqual([]);
  return statuses;
}

/** The partitions autoboot.txt boots: `[all]` (every ordinary boot) and `[tryboot]` (a `0 tryboot` reboot). */
async function autobootTargets(sim: SimJson): Promise<{ all: number; tryboot: number | null }> {
  const a = parseAutoboot(await readFile(sim.autoboot, 'utf8'));
  return { all: a.bootPartition, tryboot: a.trybootPartition };
}

/**
 * The update ended in `status` with error `code` (any code when undefined), and the boot is as it
 * was: same slots, autoboot.txt on the committed slot, same version.
 */
async function expectFailedCleanly(pi: SimulatedPi, b: Before, updateId: string, status: string, code?: string): Promise<Record<string, any>> {
  const { fu, status: after } = await ended(pi, updateId);
  expect({ status: fu.status, code: fu.error?.code }, fu.error?.message).toEqual({ status, code: code ?? expect.any(String) });
  const sim = await pi.sim();
  expect({ booted: sim.bootedSlot, bootCount: sim.bootCount, trial: sim.trial }).toEqual({ booted: b.sim.bootedSlot, bootCount: b.sim.bootCount, trial: b.sim.trial });
  expect({ committed: after.committedSlot, running: after.runningVersion }).toEqual({ committed: b.status.committedSlot, running: b.status.runningVersion });
  const committedPartition = sim.partitions![after.committedSlot];
  expect(await autobootTargets(sim)).toEqual({ all: committedPartition, tryboot: committedPartition });
  const twin = await world.reported(pi.deviceId);
  expect(twin.iothubDM.firmwareVersion).toBe(b.version);
  expect(twin.piota).toMatchObject({ bootedSlot: b.sim.bootedSlot, committedSlot: b.status.committedSlot });
  expectStatusPath(pi, b, updateId);
  return fu;
}

/** The update ended applyComplete: the new slot booted and committed, and it holds `bundle`'s images byte for byte. */
async function expectInstalled(pi: SimulatedPi, b: Before, updateId: string, bundle: Bundle): Promise<void> {
  const { fu, status } = await ended(pi, updateId);
  expect({ status: fu.status, code: fu.error?.code }, fu.error?.message).toEqual({ status: 'applyComplete', code: undefined });
  const target = b.sim.bootedSlot === 'A' ? 'B' : 'A';
  const sim = await pi.sim();
  expect({ booted: sim.bootedSlot, committed: status.committedSlot, running: status.runningVersion }).toEqual({ booted: target, committed: target, running: bundle.version });
  expect((await autobootTargets(sim)).all).toBe(sim.partitions![target]);
  expect((await world.reported(pi.deviceId)).iothubDM.firmwareVersion).toBe(bundle.version);
  // The image is what the bundle carries, byte for byte: never the start of one file and the end of another.
  const rootfs = await readFile(sim.slots[target].rootfs);
  const boot = await readFile(sim.slots[target].boot);
  expect(rootfs.subarray(0, bundle.rootfs.length).equals(bundle.rootfs), `slot ${target} rootfs holds ${bundle.name}'s image`).toBe(true);
  expect(boot.subarray(0, bundle.boot.length).equals(bundle.boot), `slot ${target} boot holds ${bundle.name}'s image`).toBe(true);
  expectStatusPath(pi, b, updateId);
}

/** The daemon's log lines (JSON) about `updateId` with message `msg`. */
async function logLines(pi: SimulatedPi, updateId: string, msg: string): Promise<Record<string, any>[]> {
  return (await pi.daemonLog())
    .split('\n')
    .filter((l) => l.includes(updateId))
    .map((l) => JSON.parse(l) as Record<string, any>)
    .filter((l) => l.msg === msg);
}
const retriesOf = (pi: SimulatedPi, updateId: string) => logLines(pi, updateId, 'download interrupted; will resume');

/** A cut at about 90 % of the bundle, in the middle of a chunk; that chunk's start, and where every chunk starts. */
async function midChunkCut(b: Bundle): Promise<{ cutAt: number; chunkStart: number; chunkStarts: number[] }> {
  const { manifest, fileSize } = await readBundleFileHeader(b.path);
  const chunk = manifest.chunks.find((c) => c.bundleOffset + c.storedSize >= fileSize * 0.9)!;
  const chunkStarts = manifest.chunks.map((c) => c.bundleOffset);
  return { cutAt: chunk.bundleOffset + Math.floor(chunk.storedSize / 2) + 1, chunkStart: chunk.bundleOffset, chunkStarts };
}

describe('downloads that recover', () => {
  let pi: SimulatedPi;
  beforeAll(async () => {
    pi = await world.pi('net-recover', { daemonConfig: FAST_DOWNLOADS });
  }, 60_000);

  it(...timed('a connection cut in the middle of a chunk resumes with Range at a chunk on the medium', async () => {
    const b = await bundle('fw-cut', '1.1.0');
    const { cutAt, chunkStart, chunkStarts } = await midChunkCut(b);
    const was = await before(pi);
    world.files.faults.cutAtFileByte = cutAt;
    const updateId = await triggerSlowFirst(pi, b, RESUME_BYTES_PER_SECOND);
    await expectInstalled(pi, was, updateId, b);
    const [resumedAt] = resumes(b.name);
    // Resumed from a position the daemon had persisted (the start of a chunk after at least one
    // written), never past the cut and never from inside the chunk the cut broke.
    expect(resumedAt).toBeGreaterThan(chunkStarts[0]);
    expect(resumedAt).toBeLessThanOrEqual(chunkStart);
    expect(chunkStarts).toContain(resumedAt);
    expect(await retriesOf(pi, updateId)).toHaveLength(1);
    expect((await logLines(pi, updateId, 'resuming the download'))[0]).toMatchObject({ offset: resumedAt });
  }));

  it(...timed('a stall longer than idleTimeoutSeconds is given up and retried', async () => {
    const b = await bundle('fw-stall', '1.2.0');
    const was = await before(pi);
    world.files.faults.stallAtFileByte = 100_000;
    const updateId = await trigger(pi, b.url);
    await expectInstalled(pi, was, updateId, b);
    const retries = await retriesOf(pi, updateId);
    expect(retries).toHaveLength(1);
    expect(retries[0].err).toMatch(/no data from .* for 1 s/);
    expect(requestsFor(b.name).length).toBeGreaterThanOrEqual(2);
  }));

  it(...timed('two 503s, then the server recovers', async () => {
    const b = await bundle('fw-503', '1.3.0');
    const was = await before(pi);
    world.files.faults.failNext = { count: 2, status: 503 };
    const updateId = await trigger(pi, b.url);
    await expectInstalled(pi, was, updateId, b);
    const retries = await retriesOf(pi, updateId);
    expect(retries.map((r) => r.attempt)).toEqual([1, 2]);
    expect(retries[0].err).toMatch(/503/);
    // Two refused first requests, then the header and the rest.
    expect(requestsFor(b.name).map((r) => r.range)).toEqual([`bytes=0-${FIRST_REQUEST_BYTES - 1}`, `bytes=0-${FIRST_REQUEST_BYTES - 1}`, `bytes=0-${FIRST_REQUEST_BYTES - 1}`, expect.stringMatching(new RegExp(`^bytes=${FIRST_REQUEST_BYTES}-\\d+$`))]);
  }));

  it(...timed('a server that ignores Range answers the resume with the whole file (200): resumed, intact', async () => {
    const b = await bundle('fw-norange', '1.4.0');
    const { cutAt } = await midChunkCut(b);
    const was = await before(pi);
    world.files.faults.cutAtFileByte = cutAt;
    world.files.faults.ignoreRange = true;
    try {
      const updateId = await triggerSlowFirst(pi, b, RESUME_BYTES_PER_SECOND, 1);
      await expectInstalled(pi, was, updateId, b);
      expect(resumes(b.name)[0]).toBeGreaterThan(0);
      expect(await logLines(pi, updateId, 'resuming the download')).toHaveLength(1);
    } finally {
      world.files.faults.ignoreRange = undefined;
    }
  }));

  it(...timed('the file replaced on the server between attempts (new ETag): starts over and installs the new file whole', async () => {
    const old = await bundle('fw-replaced', '1.5.0');
    const fresh = await bundle('fw-replaced-new', '1.5.0'); // same version and size, other images
    expect(fresh.rootfs.equals(old.rootfs)).toBe(false);
    const { cutAt } = await midChunkCut(old);
    const oldEtag = world.files.etagOf(old.name);
    const was = await before(pi);
    world.files.faults.cutAtFileByte = cutAt;
    // The first attempt asks for the header, then the rest (cut). The attempt after the cut reads the
    // header from byte 0 (still the old file) and then asks for the rest with If-Range: the file is
    // swapped between those two requests, the worst moment.
    world.files.faults.replaceAfter = { name: old.name, requests: 3, path: fresh.path };
    const updateId = await triggerSlowFirst(pi, old, RESUME_BYTES_PER_SECOND);
    await expectInstalled(pi, was, updateId, fresh);
    const reqs = requestsFor(old.name);
    expect(reqs[2].range).toMatch(/^bytes=0-/);
    expect(reqs[3]).toMatchObject({ ifRange: oldEtag });
    expect(rangeStart(reqs[3].range)).toBeGreaterThan(FIRST_REQUEST_BYTES);
    // Then a fresh start: the header again, from byte 0, after the refused resume.
    expect(reqs.slice(4).some((r) => rangeStart(r.range) === 0)).toBe(true);
    const retries = await retriesOf(pi, updateId);
    expect(retries.some((r) => /changed on the server/.test(r.err as string))).toBe(true);
  }));

  it(...timed('a 416 to a resume (the file shrank on a server without validators): starts over from byte 0', async () => {
    const old = await bundle('fw-shrinks', '1.6.0');
    const small = await bundle('fw-shrinks-small', '1.6.1', { rootfsBytes: 64 * 1024 });
    const { cutAt } = await midChunkCut(old);
    const was = await before(pi);
    // No ETag nor Last-Modified: the resume cannot carry If-Range, so the server answers its Range alone.
    Object.assign(world.files.faults, { noEtag: true, noLastModified: true, cutAtFileByte: cutAt });
    world.files.faults.replaceAfter = { name: old.name, requests: 3, path: small.path };
    try {
      const updateId = await triggerSlowFirst(pi, old, RESUME_BYTES_PER_SECOND);
      await expectInstalled(pi, was, updateId, small);
      const reqs = requestsFor(old.name);
      expect(rangeStart(reqs[3].range)).toBeGreaterThan((await readFile(small.path)).length);
      const retries = await retriesOf(pi, updateId);
      expect(retries.some((r) => /416/.test(r.err as string))).toBe(true);
      expect(reqs.slice(4).some((r) => rangeStart(r.range) === 0)).toBe(true);
    } finally {
      Object.assign(world.files.faults, { noEtag: undefined, noLastModified: undefined });
    }
  }));
});

describe('downloads that fail or fight on', () => {
  let pi: SimulatedPi;
  beforeAll(async () => {
    pi = await world.pi('net-fail', { daemonConfig: FAST_DOWNLOADS });
  }, 60_000);

  it(...timed('a 404 ends downloadFailed/downloadError at once, without retries', async () => {
    await bundle('fw-here', '2.0.0');
    const was = await before(pi);
    const updateId = await trigger(pi, world.files.url('fw-not-here'));
    const fu = await expectFailedCleanly(pi, was, updateId, 'downloadFailed', 'downloadError');
    expect(fu.error.message).toMatch(/404/);
    expect(requestsFor('fw-not-here')).toHaveLength(1);
    expect(await retriesOf(pi, updateId)).toEqual([]);
  }));

  it(...timed('a Content-Length that lies (body shorter than declared) once: retried, then installed', async () => {
    const b = await bundle('fw-short-once', '2.1.0');
    const was = await before(pi);
    world.files.faults.contentLengthDelta = 1000;
    let updateId: string;
    try {
      // Slow enough that the lie is withdrawn before the daemon's next attempt.
      updateId = await triggerSlowFirst(pi, b, 1024 * 1024);
    } finally {
      world.files.faults.contentLengthDelta = undefined;
    }
    await expectInstalled(pi, was, updateId, b);
    expect((await retriesOf(pi, updateId)).length).toBeGreaterThanOrEqual(1);
  }));

  it(...timed('a Content-Length that lies on every attempt: downloadFailed after the retries, boot untouched', async () => {
    const b = await bundle('fw-short-always', '2.2.0');
    const was = await before(pi);
    world.files.faults.contentLengthDelta = 1000;
    try {
      const updateId = await trigger(pi, b.url);
      const fu = await expectFailedCleanly(pi, was, updateId, 'downloadFailed', 'downloadError');
      expect(fu.error.message).toMatch(/bytes/);
      expect(await retriesOf(pi, updateId)).toHaveLength(FAST_DOWNLOADS.download.retry.attempts - 1);
    } finally {
      world.files.faults.contentLengthDelta = undefined;
    }
  }));

  it(...timed('a slow server: progress reaches the twin while the download runs', async () => {
    const b = await bundle('fw-slow', '2.3.0');
    const was = await before(pi);
    world.files.faults.bytesPerSecond = 128 * 1024;
    let updateId: string;
    try {
      updateId = await trigger(pi, b.url);
      await world.waitForUpdate(pi.deviceId, updateId, (fu) => fu.status !== 'waiting' && fu.status !== 'downloading', 30_000);
    } finally {
      world.files.faults.bytesPerSecond = undefined;
    }
    await expectInstalled(pi, was, updateId, b);
    const patches = world.reportedPatches(pi.deviceId).slice(was.patchesFrom).map((p) => p.patch.iothubDM?.firmwareUpdate).filter((fu) => fu?.updateId === updateId);
    const beforeComplete = patches.slice(0, patches.findIndex((fu) => fu.status === 'downloadComplete'));
    const bytes = new Set(beforeComplete.filter((fu) => fu.status === 'downloading' && typeof fu.progress?.bytes === 'number').map((fu) => fu.progress.bytes as number));
    expect(bytes.size, `progress.bytes before downloadComplete: ${[...bytes].join(', ')}`).toBeGreaterThanOrEqual(2);
  }));
});

describe('servers the device must not trust or follow', () => {
  let pi: SimulatedPi;
  const extra: TestFileServer[] = [];
  let plain: TcpServer | undefined;
  beforeAll(async () => {
    pi = await world.pi('net-trust', { daemonConfig: FAST_DOWNLOADS });
  }, 60_000);
  afterAll(async () => {
    for (const s of extra) await s.close();
    await new Promise((r) => (plain ? plain.close(r) : r(undefined)));
  });

  it(...timed('a certificate that does not name the host: downloadFailed/tlsError, no retries', async () => {
    const b = await bundle('fw-tls-name', '3.0.0');
    // Same CA (trusted by the device), but 127.0.0.2 is not among the names the certificate carries.
    const other = await startTestFileServer({ host: '127.0.0.2', tlsDir: world.files.tlsDir });
    extra.push(other);
    other.add(b.name, b.path);
    const was = await before(pi);
    const updateId = await trigger(pi, other.url(b.name));
    const fu = await expectFailedCleanly(pi, was, updateId, 'downloadFailed', 'tlsError');
    expect(fu.error.message).toMatch(/127\.0\.0\.2/);
    expect(await retriesOf(pi, updateId)).toEqual([]);
    expect(other.requests).toEqual([]);
  }));

  it(...timed('a certificate from a CA the device does not trust: downloadFailed/tlsError, no retries', async () => {
    const b = await bundle('fw-tls-ca', '3.1.0');
    const stranger = await startTestFileServer(); // its own new CA
    extra.push(stranger);
    stranger.add(b.name, b.path);
    const was = await before(pi);
    const updateId = await trigger(pi, stranger.url(b.name));
    await expectFailedCleanly(pi, was, updateId, 'downloadFailed', 'tlsError');
    expect(await retriesOf(pi, updateId)).toEqual([]);
    expect(stranger.requests).toEqual([]);
  }));

  it(...timed('a redirect to http:// is refused without a request in clear text: downloadFailed/notHttps', async () => {
    const b = await bundle('fw-to-http', '3.2.0');
    let plainConnections = 0;
    plain = createTcpServer((socket) => {
      plainConnections++;
      socket.destroy();
    });
    await new Promise<void>((r) => plain!.listen(0, '127.0.0.1', r));
    const plainPort = (plain.address() as AddressInfo).port;
    const was = await before(pi);
    world.files.faults.redirectNext = { count: 1, location: `http://127.0.0.1:${plainPort}/${b.name}` };
    try {
      const updateId = await trigger(pi, b.url);
      await expectFailedCleanly(pi, was, updateId, 'downloadFailed', 'notHttps');
      expect(requestsFor(b.name)).toHaveLength(1);
      expect(plainConnections).toBe(0);
      expect(await retriesOf(pi, updateId)).toEqual([]);
    } finally {
      world.files.faults.redirectNext = undefined;
    }
  }));
});

describe('full disks', () => {
  const mounts: string[] = [];
  afterAll(() => {
    for (const m of mounts) unmount(m);
  });

  /** A size-limited tmpfs at `dir` (created), mounted before the simulator lays out the Pi there. */
  function mountTmpfs(dir: string, size: string): void {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir]);
    mounts.push(dir);
  }

  it(...timed('a slot partition too small for the image: downloadFailed/tooLarge, nothing written', async () => {
    const pi = await world.pi('net-small-slot', { daemonConfig: FAST_DOWNLOADS, slotSize: '128K' });
    const b = await bundle('fw-too-big', '4.0.0');
    const was = await before(pi);
    const updateId = await trigger(pi, b.url);
    const fu = await expectFailedCleanly(pi, was, updateId, 'downloadFailed', 'tooLarge');
    expect(fu.error.message).toMatch(/rootfs/);
    const sim = await pi.sim();
    for (const part of ['boot', 'rootfs'] as const) {
      const bytes = await readFile(sim.slots.B[part]);
      expect(bytes.length).toBe(128 * 1024);
      expect(bytes.every((x) => x === 0), `slot B ${part} untouched`).toBe(true);
    }
  }));

  it.skipIf(!isRoot)(...timed('the slot disk fills up in the middle of the download (ENOSPC): downloadFailed/writeFailed, boot untouched [needs root to mount a tmpfs]', async () => {
    const dir = join(world.dir, 'net-enospc');
    await mkdir(join(dir, 'slots'), { recursive: true });
    // 4 sparse slot files of 4 MiB on 160 KiB of tmpfs: writing slot B's 256 KiB rootfs runs out of space.
    mountTmpfs(join(dir, 'slots'), '160k');
    const pi = await world.pi('net-enospc', { daemonConfig: FAST_DOWNLOADS });
    const b = await bundle('fw-enospc', '4.1.0');
    const was = await before(pi);
    const updateId = await trigger(pi, b.url);
    const fu = await expectFailedCleanly(pi, was, updateId, 'downloadFailed', 'writeFailed');
    expect(fu.error.message).toMatch(/ENOSPC|no space/i);
    expect(await retriesOf(pi, updateId)).toEqual([]);
  }));

  describe.skipIf(!isRoot)('the state disk (stateDir on a 256 KiB tmpfs) [needs root to mount a tmpfs]', () => {
    let pi: SimulatedPi;
    let filler: string;
    beforeAll(async () => {
      const dir = join(world.dir, 'net-state-full');
      await mkdir(join(dir, 'data'), { recursive: true });
      mountTmpfs(join(dir, 'data'), '256k');
      filler = join(dir, 'data', 'filler');
      pi = await world.pi('net-state-full', { daemonConfig: FAST_DOWNLOADS });
    }, 60_000);
    afterAll(async () => {
      world.files.faults.bytesPerSecond = undefined;
      await rm(filler, { force: true });
    });

    it(...timed('full before the trigger: the method answers 500 and nothing starts (no ghost update)', async () => {
      const b = await bundle('fw-state-full-before', '5.0.0');
      const was = await before(pi);
      const twinBefore = (await world.reported(pi.deviceId)).iothubDM.firmwareUpdate;
      await fillUp(filler);
      try {
        const answer = await world.invoke(pi.deviceId, 'firmwareUpdate', { fwPackageUri: b.url });
        expect(answer.status).toBe(500);
        expect(answer.payload.message).toMatch(/ENOSPC|no space/i);
      } finally {
        await rm(filler);
      }
      expect(requestsFor(b.name)).toEqual([]);
      expect((await pi.status()).update).toBeNull();
      expect((await world.reported(pi.deviceId)).iothubDM.firmwareUpdate).toEqual(twinBefore);
      expect(await pi.sim()).toMatchObject({ daemonPid: was.sim.daemonPid, bootCount: was.sim.bootCount, bootedSlot: was.sim.bootedSlot });
      expect(await autobootTargets(was.sim)).toEqual({ all: was.sim.partitions!.A, tryboot: was.sim.partitions!.A });
    }));

    it(...timed('full during a download: no crash, no status that is not on disk, and once space is back the download resumes to applyComplete', async () => {
      const b = await bundle('fw-state-full-during', '5.1.0');
      const was = await before(pi);
      const logFrom = (await pi.daemonLog()).length;
      world.files.faults.bytesPerSecond = 64 * 1024; // a download of about 4 s, so the disk fills while it runs
      let updateId: string;
      try {
        updateId = await trigger(pi, b.url);
        await world.waitForUpdate(pi.deviceId, updateId, (fu) => fu.status === 'downloading', 20_000);
        await fillUp(filler);
        // The daemon persists its position after the bundle header and then every 2 s: it meets the full disk.
        await waitFor('the daemon to meet the full disk', async () => /ENOSPC/.test((await pi.daemonLog()).slice(logFrom)), 20_000);
      } finally {
        world.files.faults.bytesPerSecond = undefined;
        await rm(filler, { force: true });
      }
      // No crash, no reboot, the boot configuration as it was.
      expect(pi.process.exitCode).toBeNull();
      const sim = await pi.sim();
      expect(sim).toMatchObject({ daemonPid: was.sim.daemonPid, bootCount: was.sim.bootCount, bootedSlot: was.sim.bootedSlot, trial: false });
      expect(await autobootTargets(sim)).toEqual({ all: sim.partitions!.A, tryboot: sim.partitions!.A });
      expect((await world.reported(pi.deviceId)).iothubDM.firmwareVersion).toBe(was.version);
      // Space is back: the update must not stay "downloading" on the twin with nothing running.
      const end = await world.waitForUpdate(pi.deviceId, updateId, (fu) => TERMINAL.includes(fu.status), 15_000).catch(() => undefined);
      if (!end) {
        const shown = (await world.reported(pi.deviceId)).iothubDM.firmwareUpdate;
        const errors = (await pi.daemonLog()).slice(logFrom).split('\n').filter((l) => /"level":50/.test(l));
        expect.fail(
          `15 s after space was back, update ${updateId} still shows '${shown?.status}' on the twin and '${(await pi.status()).update?.phase}' in piota status; ` +
            `the daemon logged: ${errors.join(' | ')}`,
        );
      }
      // The runner kept the last persisted phase and tried again; with space back, the download resumed.
      await expectInstalled(pi, was, updateId, b);
      expect((await pi.daemonLog()).slice(logFrom)).toMatch(/could not persist its state; will try again/);
    }));
  });
});

/** Writes `path` until its filesystem is full. */
async function fillUp(path: string): Promise<void> {
  const fh = await open(path, 'w');
  try {
    const block = Buffer.alloc(4096, 0xaa);
    for (;;) await fh.write(block);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    await fh.close();
  }
}

function unmount(dir: string): void {
  try {
    execFileSync('umount', ['-l', dir]);
  } catch {
    // already gone
  }
}

