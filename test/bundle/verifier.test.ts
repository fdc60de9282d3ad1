import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReadStream } from 'node:fs';
import { BundleError } from '../../src/bundle/errors.js';
import { MANIFEST_OFFSET, MAX_MANIFEST_LENGTH, PREAMBLE_LENGTH } from '../../src/bundle/format.js';
import { generateKeyPair } from '../../src/bundle/keys.js';
import { verifyHeader, readVerifiedHeader, verifyChunks, type VerifiedChunk } from '../../src/bundle/verifier.js';
import { device, imageBytes, makeBundle, pieces, reassemble, verifyAll, workspace, type Made, type Workspace } from './fixtures.js';

let ws: Workspace;
let made: Made;
const rootfs = imageBytes(41_000, 7);
const boot = imageBytes(9_000, 9);

beforeAll(async () => {
  ws = await workspace();
  // Format 1: these tests are about its layout (the file ends after the last chunk, so a cut, a flip
  // or a trailing byte anywhere lands in a chunk or past the end); format 2 is test/adaptive/format2.test.ts.
  made = await makeBundle(ws, 'main', { rootfs, boot }, { formatVersion: 1 });
});
afterAll(() => ws.remove());

function flip(bytes: Buffer, at: number): Buffer {
  const copy = Buffer.from(bytes);
  copy[at] ^= 0x20;
  return copy;
}

async function headerOf(bytes: Buffer) {
  const h = await verifyHeader(pieces(bytes), device(made.key));
  await h.rest.return();
  return h;
}

describe('round trip', () => {
  it('yields every image byte at its offset, fed in odd-sized pieces', async () => {
    const { chunks, error } = await verifyAll(made.bytes, device(made.key));
    expect(error).toBeUndefined();
    expect(chunks.map((c) => c.index)).toEqual([...Array(14).keys()]);
    expect(reassemble(chunks, 'rootfs', rootfs.length).equals(rootfs)).toBe(true);
    expect(reassemble(chunks, 'boot', boot.length).equals(boot)).toBe(true);
  });

  it('describes the bundle: payloads, chunk offsets, sizes', async () => {
    const h = await readVerifiedHeader(createReadStream(made.file), device(made.key));
    await h.rest.return();
    const m = h.manifest;
    expect(h.keyId).toBe(made.key.keyId);
    expect(h.bundleSize).toBe(made.bytes.length);
    expect(m.chunks[0].bundleOffset).toBe(h.headerLength);
    expect(m).toMatchObject({ version: '2.0.0', securityVersion: 5, compatible: ['raspberrypi4-64', 'raspberrypi5'] });
    expect(m.payloads.map((p) => [p.name, p.imageSize, p.compression, p.firstChunk, p.chunkCount])).toEqual([
      ['rootfs', 41_000, 'gzip', 0, 11],
      ['boot', 9_000, 'gzip', 11, 3],
    ]);
    for (let i = 1; i < m.chunks.length; i++) {
      expect(m.chunks[i].bundleOffset).toBe(m.chunks[i - 1].bundleOffset + m.chunks[i - 1].storedSize);
    }
    const last = m.chunks[m.chunks.length - 1];
    expect(last.bundleOffset + last.storedSize).toBe(h.bundleSize);
    expect(last).toMatchObject({ payload: 'boot', imageOffset: 8192, imageSize: 9_000 - 8192 });
  });

  it('stores chunks uncompressed with compression none, and gzip ones smaller', async () => {
    const plain = await makeBundle(ws, 'plain', { rootfs }, { compression: 'none' });
    const { chunks, error } = await verifyAll(plain.bytes, device(plain.key));
    expect(error).toBeUndefined();
    expect(reassemble(chunks, 'rootfs', rootfs.length).equals(rootfs)).toBe(true);
    const h = await verifyHeader(pieces(plain.bytes), device(plain.key));
    await h.rest.return();
    expect(h.manifest.payloads[0]).toMatchObject({ compression: 'none', storedSize: rootfs.length });
    const gz = await headerOf(made.bytes);
    expect(gz.manifest.payloads[0].storedSize).toBeLessThan(rootfs.length * 0.8);
  });
});

describe('corruption', () => {
  async function codeAfterFlip(at: number) {
    return verifyAll(flip(made.bytes, at), device(made.key));
  }

  it('of the magic: malformed', async () => {
    expect((await codeAfterFlip(0)).error?.code).toBe('malformed');
    expect((await codeAfterFlip(7)).error?.code).toBe('malformed');
  });

  it('of the format version: unsupportedFormat', async () => {
    expect((await codeAfterFlip(11)).error?.code).toBe('unsupportedFormat');
  });

  it('of the manifest length: malformed when past the bound, signatureInvalid otherwise', async () => {
    const huge = Buffer.from(made.bytes);
    huge.writeUInt32BE(MAX_MANIFEST_LENGTH + 1, 12);
    // Only the preamble is offered: the bound is checked before anything more is read.
    expect((await verifyAll(huge.subarray(0, PREAMBLE_LENGTH), device(made.key))).error?.code).toBe('malformed');
    expect((await codeAfterFlip(15)).error?.code).toBe('signatureInvalid');
  });

  it('of a signature: signatureInvalid; of its key id: untrustedKey; of the count: malformed', async () => {
    expect((await codeAfterFlip(PREAMBLE_LENGTH + 4 + 16 + 30)).error?.code).toBe('signatureInvalid');
    expect((await codeAfterFlip(PREAMBLE_LENGTH + 4 + 3)).error?.code).toBe('untrustedKey');
    expect((await codeAfterFlip(PREAMBLE_LENGTH + 3)).error).toMatchObject({ code: 'malformed', message: expect.stringContaining('signatures') });
  });

  it('of the manifest, its chunk list or its padding: signatureInvalid', async () => {
    const text = made.bytes.toString('latin1');
    const at = (needle: string) => {
      const i = text.indexOf(needle, MANIFEST_OFFSET);
      expect(i).toBeGreaterThan(0);
      return i;
    };
    const h = await headerOf(made.bytes);
    for (const offset of [
      at('"version"') + 12, // the version text
      at('"securityVersion"') + 18,
      at('raspberrypi4-64'),
      at('"chunks"') + 30, // inside the first chunk's entry
      at(h.manifest.chunks[12].sha256) + 5, // a chunk hash in the list
      h.headerLength - 1, // the space padding
    ]) {
      expect((await codeAfterFlip(offset)).error?.code, `offset ${offset}`).toBe('signatureInvalid');
    }
  });

  it('of a payload at its start, middle and end: hashMismatch, after the good chunks only', async () => {
    const h = await headerOf(made.bytes);
    const chunkAt = (offset: number) => h.manifest.chunks.find((c) => offset >= c.bundleOffset && offset < c.bundleOffset + c.storedSize)!;
    for (const offset of [h.headerLength, Math.floor((h.headerLength + h.bundleSize) / 2), h.bundleSize - 1]) {
      const { chunks, error } = await codeAfterFlip(offset);
      const bad = chunkAt(offset);
      expect(error?.code, `offset ${offset}`).toBe('hashMismatch');
      expect(error?.message).toContain(`chunk ${bad.index} of ${bad.payload}`);
      expect(chunks.map((c) => c.index)).toEqual([...Array(bad.index).keys()]);
    }
  });
});

describe('truncation', () => {
  it('at any offset: truncated, and never a chunk past the cut', async () => {
    const h = await headerOf(made.bytes);
    const offsets = new Set<number>([0, 1, 8, 15, 16, 17, MANIFEST_OFFSET - 1, MANIFEST_OFFSET, h.headerLength - 1, h.headerLength]);
    for (const c of h.manifest.chunks) for (const d of [-1, 1, Math.floor(c.storedSize / 2)]) offsets.add(c.bundleOffset + d);
    offsets.add(h.bundleSize - 1);
    for (let o = 0; o < h.bundleSize; o += 97) offsets.add(o);
    for (const cut of offsets) {
      const { chunks, error } = await verifyAll(made.bytes.subarray(0, cut), device(made.key));
      expect(error?.code, `cut at ${cut}`).toBe('truncated');
      for (const c of chunks) expect(h.manifest.chunks[c.index].bundleOffset + h.manifest.chunks[c.index].storedSize).toBeLessThanOrEqual(cut);
    }
  });

  it('says where it ended', async () => {
    const h = await headerOf(made.bytes);
    const { error } = await verifyAll(made.bytes.subarray(0, h.manifest.chunks[2].bundleOffset + 10), device(made.key));
    expect(error?.message).toContain(`ends at byte ${h.manifest.chunks[2].bundleOffset + 10}, inside chunk 2 of rootfs`);
  });

  it('bytes after the last chunk are refused before the last chunk is yielded', async () => {
    const { chunks, error } = await verifyAll(Buffer.concat([made.bytes, Buffer.from('x')]), device(made.key));
    expect(error?.code).toBe('malformed');
    expect(chunks).toHaveLength(13);
  });
});

describe('trust', () => {
  it('refuses an unknown key before reading past the header', async () => {
    let pulled = 0;
    async function* counted() {
      for await (const p of pieces(made.bytes, [512])) {
        pulled += p.length;
        yield p;
      }
    }
    const err = await readVerifiedHeader(counted(), device(generateKeyPair())).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BundleError);
    expect((err as BundleError).code).toBe('untrustedKey');
    expect((err as BundleError).message).toContain(made.key.keyId);
    const h = await headerOf(made.bytes);
    expect(pulled).toBeLessThan(h.headerLength + 512);
  });

  it('rotation: a bundle signed by two keys is accepted by devices trusting either', async () => {
    const oldKey = generateKeyPair();
    const newKey = generateKeyPair();
    const both = await makeBundle(ws, 'rotation', { rootfs }, { signingKeys: [oldKey.privateKeyPem, newKey.privateKeyPem] });
    for (const key of [oldKey, newKey]) {
      const h = await verifyHeader(pieces(both.bytes), device(key));
      await h.rest.return();
      expect(h.keyId).toBe(key.keyId);
    }
    const both2 = await verifyHeader(pieces(both.bytes), { ...device(oldKey), trustedKeys: [generateKeyPair().publicKeyPem, newKey.publicKeyPem] });
    await both2.rest.return();
    expect(both2.keyId).toBe(newKey.keyId);
    expect((await verifyAll(both.bytes, device(generateKeyPair()))).error?.code).toBe('untrustedKey');
    // The old key's signature broken, the new one intact: a device trusting both still accepts.
    const broken = flip(both.bytes, PREAMBLE_LENGTH + 4 + 16 + 1);
    expect((await verifyAll(broken, { ...device(oldKey), trustedKeys: [oldKey.publicKeyPem, newKey.publicKeyPem] })).error).toBeUndefined();
    expect((await verifyAll(broken, device(oldKey))).error?.code).toBe('signatureInvalid');
  });

  it('refuses an unsigned bundle', async () => {
    const unsigned = await makeBundle(ws, 'unsigned', { rootfs }, { signingKeys: [] });
    expect((await verifyAll(unsigned.bytes, device(made.key))).error?.code).toBe('unsigned');
  });

  it('refuses a bundle for another model: incompatible', async () => {
    const { error } = await verifyAll(made.bytes, device(made.key, { model: 'raspberrypi3' }));
    expect(error?.code).toBe('incompatible');
    expect(error?.message).toContain('raspberrypi3');
  });

  it('refuses a lower security version (downgrade), accepts equal and higher', async () => {
    expect((await verifyAll(made.bytes, device(made.key, { securityVersion: 6 }))).error?.code).toBe('downgrade');
    expect((await verifyAll(made.bytes, device(made.key, { securityVersion: 5 }))).error).toBeUndefined();
    expect((await verifyAll(made.bytes, device(made.key, { securityVersion: 0 }))).error).toBeUndefined();
  });

  it('readVerifiedHeader insists on a model, a security version and a trusted key', async () => {
    const trust = device(made.key);
    await expect(readVerifiedHeader(pieces(made.bytes), { ...trust, model: '' })).rejects.toMatchObject({ code: 'invalidArgument' });
    await expect(readVerifiedHeader(pieces(made.bytes), { ...trust, securityVersion: -1 })).rejects.toMatchObject({ code: 'invalidArgument' });
    await expect(readVerifiedHeader(pieces(made.bytes), { ...trust, trustedKeys: [] })).rejects.toMatchObject({ code: 'invalidArgument' });
    await expect(readVerifiedHeader(pieces(made.bytes), { ...trust, trustedKeys: ['nonsense'] })).rejects.toMatchObject({ code: 'badKey' });
  });
});

describe('resuming', () => {
  it('at every chunk boundary yields the remaining chunks, byte for byte', async () => {
    const h = await headerOf(made.bytes);
    for (const c of h.manifest.chunks) {
      const got: VerifiedChunk[] = [];
      for await (const v of verifyChunks(h, pieces(made.bytes.subarray(c.bundleOffset), [333]), c.index)) got.push(v);
      expect(got.map((v) => v.index)).toEqual(h.manifest.chunks.slice(c.index).map((x) => x.index));
      for (const v of got) {
        const image = v.payload === 'rootfs' ? rootfs : boot;
        expect(v.data.equals(image.subarray(v.imageOffset, v.imageOffset + v.data.length))).toBe(true);
      }
    }
    const none: VerifiedChunk[] = [];
    for await (const v of verifyChunks(h, pieces(Buffer.alloc(0)), h.manifest.chunks.length)) none.push(v);
    expect(none).toEqual([]);
  });

  it('from the wrong offset: hashMismatch; from a chunk that does not exist: invalidArgument', async () => {
    const h = await headerOf(made.bytes);
    const wrong = verifyChunks(h, pieces(made.bytes.subarray(h.manifest.chunks[3].bundleOffset)), 4);
    await expect(wrong.next()).rejects.toMatchObject({ code: 'hashMismatch' });
    await expect(verifyChunks(h, pieces(made.bytes), 99).next()).rejects.toMatchObject({ code: 'invalidArgument' });
  });

  it('stopping early closes the source; so does closing an unread rest', async () => {
    const whole = createReadStream(made.file);
    const h = await readVerifiedHeader(whole, device(made.key));
    const stream = createReadStream(made.file, { start: h.headerLength });
    for await (const c of verifyChunks(h, stream)) if (c.index === 1) break;
    expect(stream.destroyed).toBe(true);
    expect(whole.destroyed).toBe(false);
    await h.rest.return();
    expect(whole.destroyed).toBe(true);
  });

  it('a refused header closes the source', async () => {
    const whole = createReadStream(made.file);
    await expect(readVerifiedHeader(whole, device(generateKeyPair()))).rejects.toMatchObject({ code: 'untrustedKey' });
    expect(whole.destroyed).toBe(true);
  });
});

describe('read-ahead into pooled buffers (the daemon path)', () => {
  /** A pool that counts how many of its buffers are out at once. */
  function countingPool() {
    const free: Buffer[] = [];
    const pool = {
      out: 0,
      most: 0,
      made: 0,
      take(size: number): Buffer {
        pool.out += 1;
        pool.most = Math.max(pool.most, pool.out);
        const b = free.pop() ?? (pool.made++, Buffer.alloc(256 * 1024));
        return b.subarray(0, size);
      },
      give(b: Buffer): void {
        pool.out -= 1;
        free.push(Buffer.from(b.buffer, b.byteOffset, 256 * 1024));
      },
    };
    return pool;
  }
  const image = imageBytes(3 * 1024 * 1024 + 777, 11);
  let pooled: Made;
  beforeAll(async () => {
    // Chunks of 256 KiB: hashed on libuv's pool (WebCrypto), not on the main thread.
    pooled = await makeBundle(ws, 'pooled', { rootfs: image }, { chunkSize: 256 * 1024, compression: 'none' });
  });

  for (const readAhead of [1, 2, 3]) {
    it(`readAhead ${readAhead}: every byte arrives, and at most ${readAhead + 1} buffers are out at once, however many chunks`, async () => {
      const pool = countingPool();
      const h = await verifyHeader(pieces(pooled.bytes, [1000, 70_000, 5]), device(pooled.key));
      const out = Buffer.alloc(image.length);
      let count = 0;
      for await (const c of verifyChunks(h, h.rest, 0, { readAhead, buffers: pool })) {
        c.data.copy(out, c.imageOffset);
        c.release();
        count++;
      }
      expect(count).toBe(13);
      expect(out.equals(image)).toBe(true);
      expect(pool.most).toBeLessThanOrEqual(readAhead + 1);
      expect(pool.made).toBeLessThanOrEqual(readAhead + 1);
      expect(pool.out).toBe(0);
    });
  }

  it('a bad large chunk is refused (hashMismatch) after the chunks before it, and its buffer goes back', async () => {
    const h0 = await verifyHeader(pieces(pooled.bytes), device(pooled.key));
    const bad = Buffer.from(pooled.bytes);
    bad[h0.manifest.chunks[5].bundleOffset + 1000] ^= 1;
    const pool = countingPool();
    const h = await verifyHeader(pieces(bad, [65536]), device(pooled.key));
    const seen: number[] = [];
    const err = await (async () => {
      for await (const c of verifyChunks(h, h.rest, 0, { readAhead: 2, buffers: pool })) {
        seen.push(c.index);
        c.release();
      }
    })().catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'hashMismatch' });
    expect((err as Error).message).toContain('chunk 5 of rootfs');
    expect(seen).toEqual([0, 1, 2, 3, 4]);
    expect(pool.out).toBe(0);
  });

  it('refuses a readAhead that is not a whole number >= 1', async () => {
    const h = await verifyHeader(pieces(pooled.bytes), device(pooled.key));
    await expect(verifyChunks(h, h.rest, 0, { readAhead: 0 }).next()).rejects.toMatchObject({ code: 'invalidArgument' });
  });
});
