import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { COMPRESSIONS, compressChunk, expandChunk } from '../../src/bundle/compression.js';
import { BundleError } from '../../src/bundle/errors.js';

describe('chunk codecs', () => {
  const image = Buffer.concat([randomBytes(64 * 1024), Buffer.alloc(64 * 1024, 7)]);

  for (const c of COMPRESSIONS) {
    it(`${c}: a chunk expands back to its image bytes`, async () => {
      const stored = await compressChunk(c, image);
      if (c !== 'none') expect(stored.length).toBeLessThan(image.length);
      expect((await expandChunk(c, stored, image.length)).equals(image)).toBe(true);
    });

    it(`${c}: a chunk that expands to another size than the manifest says is malformed`, async () => {
      const stored = await compressChunk(c, image);
      await expect(expandChunk(c, stored, image.length + 1)).rejects.toMatchObject({ code: 'malformed' });
    });
  }

  it('gzip: a decompression bomb is refused without producing more than the declared size', async () => {
    const bomb = gzipSync(Buffer.alloc(64 * 1024 * 1024)); // 64 MiB of zeros in about 64 KiB
    const err = await expandChunk('gzip', bomb, 1024 * 1024).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BundleError);
    expect((err as BundleError).code).toBe('malformed');
    expect((err as Error).message).toMatch(/does not expand to 1048576 bytes/);
  });

  it('gzip: bytes that are not gzip are malformed, naming the codec', async () => {
    await expect(expandChunk('gzip', randomBytes(100), 100)).rejects.toThrow(/gzip data/);
  });

  it('an unknown codec is refused as unsupportedFormat', async () => {
    await expect(expandChunk('lz4' as never, image, image.length)).rejects.toMatchObject({ code: 'unsupportedFormat' });
  });
});
