import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, open, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import { createBundle } from '../../src/bundle/create.js';
import { readBundleFileHeader } from '../../src/bundle/inspect.js';
import { unpackIndex } from '../../src/bundle/block-index.js';
import { unitOffsets } from '../../src/adaptive/plan.js';
import { buildSlotIndexInBackground, slotIndexPath } from '../../src/adaptive/adaptive-download.js';
import { syntheticPair } from '../adaptive/synthetic.js';
import { World, waitFor, type SimulatedPi } from './world.js';
import { TERMINAL } from './invariants.js';

// Adaptive updates end to end: the real daemon in a simulated Pi (`piota simulate`), the hub
// emulator, the real SDK, and the test HTTPS server serving a format 2 bundle (what `bundle create`
// makes by default). Each Pi starts holding release 1 in slot A and release 0 in slot B (a small
// synthetic root image of the real pair's shape, test/adaptive/synthetic.ts); the update installs
// release 2 into B. Judged from outside: the twin (status, error, progress.method, bytesFetched),
// the slot file's bytes, the daemon's state file and log.

const CHUNK = 256 * 1024;
/**
 * 8 MiB images (32 chunks, enough for a checkpoint in the middle of the adaptive download), with
 * unchanged files after the ones release 2 adds (a copy of earlier ones), as a fuller root has: a
 * download resumed after the new files still has blocks to reuse, so it resumes adaptively.
 */
const pair = (() => {
  const p = syntheticPair(2048, 11);
  const filled = (image: Buffer) => {
    const out = Buffer.from(image);
    image.copy(out, 1280 * 4096, 8 * 4096, 776 * 4096);
    return out;
  };
  return { release0: filled(p.release0), release1: filled(p.release1), release2: filled(p.release2) };
})();
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const quiet = pino({ level: 'silent' });

let world: World;
let bundlePath: string;
let chunksEnd: number;
let chunkCount: number;
const timings: string[] = [];

beforeAll(async () => {
  world = await World.create();
  const dir = join(world.dir, 'adaptive');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'r2.img'), pair.release2);
  bundlePath = join(dir, 'r2.piota');
  // No formatVersion: the default bundle is the one the goal is measured against.
  await createBundle({
    out: bundlePath, version: '2.0.0', compatible: ['raspberrypi4-64'], chunkSize: CHUNK,
    payloads: [{ name: 'rootfs', file: join(dir, 'r2.img') }], signingKeys: [world.key.privateKeyPem],
  });
  const { manifest } = await readBundleFileHeader(bundlePath);
  expect(manifest.formatVersion).toBe(2);
  chunksEnd = manifest.chunksEnd;
  chunkCount = manifest.chunks.length;
  world.files.add('r2.piota', bundlePath);
}, 60_000);

afterAll(async () => {
  console.log(`adaptive-updates timings:\n  ${timings.join('\n  ')}`);
  await world?.close();
});

/** Runs a case and notes how long it took (printed at the end). */
function timed(fn: () => Promise<void>): () => Promise<void> {
  return async () => {
    const t0 = Date.now();
    try {
      await fn();
    } finally {
      timings.push(`${((Date.now() - t0) / 1000).toFixed(1)} s  ${expect.getState().currentTestName}`);
    }
  };
}

/**
 * A Pi whose slot A holds release 1 and slot B release 0. With `index`, the index of slot A is there
 * from the start; without, none is built in idle time (`slotIndex.bytesPerSecond: 0`), so the
 * update finds none, as when it comes before the idle build is done.
 */
async function piHoldingRelease1(deviceId: string, index: boolean): Promise<SimulatedPi> {
  const dir = join(world.dir, deviceId);
  await mkdir(join(dir, 'slots'), { recursive: true });
  await writeFile(join(dir, 'slots', 'A-rootfs.img'), pair.release1);
  await writeFile(join(dir, 'slots', 'B-rootfs.img'), pair.release0);
  if (index) await buildSlotIndexInBackground(join(dir, 'data'), 'A', 'rootfs', join(dir, 'slots', 'A-rootfs.img'), pair.release1.length, 0, quiet);
  return world.pi(deviceId, {
    slotSize: '8M',
    version: '1.0.0',
    daemonConfig: {
      download: { idleTimeoutSeconds: 5, retry: { attempts: 4, firstDelaySeconds: 0.05, maxDelaySeconds: 0.2 } },
      ...(index ? {} : { slotIndex: { bytesPerSecond: 0 } }),
    },
  });
}

async function trigger(pi: SimulatedPi, url: string): Promise<string> {
  const answer = await world.invoke(pi.deviceId, 'firmwareUpdate', { fwPackageUri: url });
  expect(answer.status, JSON.stringify(answer.payload)).toBe(200);
  return answer.payload.updateId as string;
}

async function ended(pi: SimulatedPi, updateId: string): Promise<Record<string, any>> {
  const twin = await world.waitForUpdate(pi.deviceId, updateId, (fu) => TERMINAL.includes(fu.status), 90_000);
  return twin.iothubDM.firmwareUpdate as Record<string, any>;
}

const slotB = async (pi: SimulatedPi) => (await readFile(join(pi.dir, 'slots', 'B-rootfs.img'))).subarray(0, pair.release2.length);

/** Every chunk of slot B is either what it held (release 0) or release 2's: never another byte. */
async function onlyOldOrNewChunks(pi: SimulatedPi): Promise<void> {
  const b = await slotB(pi);
  for (let at = 0; at < b.length; at += CHUNK) {
    const piece = b.subarray(at, at + CHUNK);
    const ok = piece.equals(pair.release0.subarray(at, at + CHUNK)) || piece.equals(pair.release2.subarray(at, at + CHUNK));
    expect(ok, `slot B bytes ${at}..${at + CHUNK} are neither release 0's nor release 2's`).toBe(true);
  }
}

const rangesOf = (name: string, from: number) => world.files.requests.slice(from).filter((r) => r.path === name && r.range !== undefined);

describe('adaptive updates on a simulated Pi', () => {
  it('a device holding release 1 and its slot index installs release 2 adaptively: a fraction fetched, the slot exact', timed(async () => {
    const pi = await piHoldingRelease1('pi-adaptive', true);
    const from = world.files.requests.length;
    const updateId = await trigger(pi, world.files.url('r2.piota'));
    const fu = await ended(pi, updateId);
    expect(fu.status, JSON.stringify(fu.error)).toBe('applyComplete');
    expect(fu.progress.method).toBe('adaptive');
    expect(fu.progress.bytesFetched).toBeGreaterThan(0);
    expect(fu.progress.bytesFetched).toBeLessThan(chunksEnd / 4);
    expect(fu.progress.bytesReused).toBeGreaterThan(pair.release2.length / 4);
    expect(sha256(await slotB(pi))).toBe(sha256(pair.release2));
    const status = await pi.status();
    expect(status.slots.B?.sha256).toBe(sha256(pair.release2));
    // Started by the method, never by a desired release: none is shown.
    expect(status.desiredFirmware).toBeNull();
    // The units came by bounded Range requests (bytes=a-b), not a full download of the chunks.
    expect(rangesOf('r2.piota', from).filter((r) => /^bytes=\d+-\d+$/.test(r.range!)).length).toBeGreaterThan(0);
  }), 120_000);

  it('no slot index yet: the full download, and the index of the running slot appears meanwhile', timed(async () => {
    const pi = await piHoldingRelease1('pi-first', false);
    const updateId = await trigger(pi, world.files.url('r2.piota'));
    const fu = await ended(pi, updateId);
    expect(fu.status, JSON.stringify(fu.error)).toBe('applyComplete');
    expect(fu.progress.method).toBe('full');
    expect(fu.progress.bytesFetched).toBeGreaterThanOrEqual(chunksEnd);
    expect(sha256(await slotB(pi))).toBe(sha256(pair.release2));
    const index = slotIndexPath(join(pi.dir, 'data'), 'A', 'rootfs');
    await waitFor('the index of slot A', async () => (await stat(index).catch(() => undefined))?.isFile(), 20_000);
  }), 120_000);

  it('a server that ignores Range: the full download, applyComplete', timed(async () => {
    const pi = await piHoldingRelease1('pi-norange', true);
    world.files.faults.ignoreRange = true;
    let fu: Record<string, any>;
    try {
      fu = await ended(pi, await trigger(pi, world.files.url('r2.piota')));
    } finally {
      world.files.faults.ignoreRange = false;
    }
    expect(fu.status, JSON.stringify(fu.error)).toBe('applyComplete');
    expect(fu.progress.method).toBe('full');
    expect(sha256(await slotB(pi))).toBe(sha256(pair.release2));
  }), 120_000);

  it('a power cut in the middle of the adaptive download: the restart resumes at the last checkpoint and completes', timed(async () => {
    const pi = await piHoldingRelease1('pi-cut', true);
    // Slow responses (each range at most 24 KiB/s, four at a time): the download lasts several of
    // the daemon's 2 s checkpoints, so one lands in the middle.
    world.files.faults.bytesPerSecond = 24 * 1024;
    let cutAt: Record<string, any> | undefined;
    let updateId: string;
    try {
      updateId = await trigger(pi, world.files.url('r2.piota'));
      cutAt = await waitFor('a checkpoint in the middle of the adaptive download', async () => {
        const state = await pi.state().catch(() => undefined);
        const u = state?.update;
        if (!u || u.method !== 'adaptive' || !(u.nextChunk > 0 && u.nextChunk < chunkCount)) return undefined;
        const bootCount = (await pi.sim()).bootCount;
        const pid = await pi.freeze();
        if (pid === undefined) return undefined;
        // Frozen: what is on disk now is what the restart finds.
        const onDisk = (await pi.state().catch(() => undefined))?.update;
        if (onDisk?.phase !== 'downloading' || onDisk.method !== 'adaptive' || onDisk.nextChunk >= chunkCount) {
          pi.thaw(pid);
          return undefined;
        }
        await pi.cutFrozen(pid, bootCount);
        return onDisk as Record<string, any>;
      }, 60_000);
    } finally {
      world.files.faults.bytesPerSecond = undefined;
    }
    const fu = await ended(pi, updateId!);
    expect(fu.status, JSON.stringify(fu.error)).toBe('applyComplete');
    expect(fu.progress.method).toBe('adaptive');
    expect(sha256(await slotB(pi))).toBe(sha256(pair.release2));
    // The restarted daemon re-planned from the chunk the cut found on disk: only the chunks since that
    // checkpoint were done again, and what it fetched stays a fraction of the chunks.
    const log = (await pi.daemonLog()).split('\n');
    const lines = (msg: string) => log.filter((l) => l.includes(`"msg":"${msg}"`)).map((l) => JSON.parse(l) as Record<string, number>);
    expect(lines('resuming the download').map((l) => l.chunk), log.filter((l) => l.includes('download')).join('\n')).toEqual([cutAt!.nextChunk]);
    expect(lines('adaptive download').map((l) => l.fromChunk)).toEqual([0, cutAt!.nextChunk]);
    expect(fu.progress.bytesFetched).toBeLessThan(chunksEnd / 2);
  }), 180_000);
});

/** A copy of the bundle with `bytes` flipped at `at` (a tampered file on the server), served as `name`. */
async function tampered(name: string, at: number, bytes: number): Promise<string> {
  const path = join(world.dir, 'adaptive', name);
  await copyFile(bundlePath, path);
  const fh = await open(path, 'r+');
  try {
    const b = Buffer.alloc(bytes);
    await fh.read(b, 0, bytes, at);
    for (let i = 0; i < bytes; i++) b[i] ^= 0x5a;
    await fh.write(b, 0, bytes, at);
  } finally {
    await fh.close();
  }
  world.files.add(name, path);
  return world.files.url(name);
}

describe('a tampered format 2 bundle on the server', () => {
  it('a changed unit: hashMismatch before any wrong byte; a changed block index: the full download, applyComplete', timed(async () => {
    const pi = await piHoldingRelease1('pi-tamper', true);
    const { manifest } = await readBundleFileHeader(bundlePath);
    const p = manifest.payloads[0];
    const b = p.blocks!;
    const stored = Buffer.alloc(b.size);
    const fh = await open(bundlePath, 'r');
    await fh.read(stored, 0, b.size, b.offset).finally(() => fh.close());
    const index = unpackIndex(stored, { imageSize: p.imageSize, chunkSize: p.chunkSize, blockSize: b.blockSize, unitSize: b.unitSize }, 'the index');
    // Block 1 (a metadata block release 2 rewrote) is in neither slot: the device must fetch its unit.
    const { offsets } = unitOffsets(index, p, 0);
    const unitUrl = await tampered('r2-unit.piota', offsets[1] + 2, 4);

    const fu = await ended(pi, await trigger(pi, unitUrl));
    expect(fu.status).toBe('downloadFailed');
    expect(fu.error.code).toBe('hashMismatch');
    expect(fu.error.message).toMatch(/unit 1 of chunk 0 of rootfs/);
    await onlyOldOrNewChunks(pi);
    await waitFor('the Pi to settle on slot A', async () => {
      const s = await pi.status();
      return s.update === null && s.bootedSlot === 'A' && s.committedSlot === 'A';
    }, 30_000);

    // The index is checked against its signed hash before use: a changed one is not trusted, and the
    // chunks (intact) install in full.
    const indexUrl = await tampered('r2-index.piota', b.offset + Math.floor(b.size / 2), 4);
    const second = await ended(pi, await trigger(pi, indexUrl));
    expect(second.status, JSON.stringify(second.error)).toBe('applyComplete');
    expect(second.progress.method).toBe('full');
    expect(sha256(await slotB(pi))).toBe(sha256(pair.release2));
  }), 180_000);
});
