import { afterAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { BlockChecker } from '../../src/adaptive/block-checker.js';
import { allocAligned } from '../../src/slots/aligned-buffer.js';

const BLOCK = 4096;
const checker = new BlockChecker();
afterAll(() => checker.close());

/** A shared chunk of `blocks` blocks, each filled with its own byte. */
function chunk(blocks: number): Buffer {
  const b = allocAligned(blocks * BLOCK, true);
  for (let i = 0; i < blocks; i++) b.fill(i + 1, i * BLOCK, (i + 1) * BLOCK);
  return b;
}

function keysOf(data: Buffer, blocks: number[], keyBytes: number): Uint8Array {
  const keys = new Uint8Array(blocks.length * keyBytes);
  blocks.forEach((b, i) => keys.set(createHash('sha256').update(data.subarray(b * BLOCK, (b + 1) * BLOCK)).digest().subarray(0, keyBytes), i * keyBytes));
  return keys;
}

describe('the block checker (worker thread)', () => {
  it('passes blocks that match their keys and hashes the whole chunk', async () => {
    const data = chunk(8);
    const blocks = [0, 2, 3, 7];
    const r = await checker.check(data, BLOCK, Int32Array.from(blocks), keysOf(data, blocks, 6), 6);
    expect(r.bad).toEqual([]);
    expect(r.sha256?.toString('hex')).toBe(createHash('sha256').update(data).digest('hex'));
  });

  it('names the blocks that changed since their key was taken, and leaves the chunk unhashed', async () => {
    const data = chunk(8);
    const blocks = [1, 4, 5];
    const keys = keysOf(data, blocks, 8);
    data[4 * BLOCK + 100] ^= 1; // block 4 changed after its index was built
    const r = await checker.check(data, BLOCK, Int32Array.from(blocks), keys, 8);
    expect(r.bad).toEqual([4]);
    expect(r.sha256).toBeNull();
  });

  it('refuses a buffer the worker cannot see without a copy, and keys of the wrong length', async () => {
    await expect(checker.check(Buffer.alloc(BLOCK), BLOCK, new Int32Array(0), new Uint8Array(0), 6)).rejects.toThrow(/shared buffers only/);
    await expect(checker.check(chunk(2), BLOCK, Int32Array.from([0]), new Uint8Array(5), 6)).rejects.toThrow(/1 blocks to check but 5 key bytes/);
  });
});
