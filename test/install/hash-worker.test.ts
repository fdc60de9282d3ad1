import { describe, it, expect } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { HashWorker } from '../../src/install/hash-worker.js';
import { AlignedBufferPool } from '../../src/slots/aligned-buffer.js';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('the hash worker', () => {
  it('hashes views of shared buffers in place, many at once, each with its own digest', async () => {
    const worker = new HashWorker();
    try {
      const pool = new AlignedBufferPool(1 << 20, true);
      const views = Array.from({ length: 6 }, (_, i) => {
        const v = pool.take((1 << 20) - i * 1000);
        randomBytes(v.length).copy(v);
        return v;
      });
      expect(views[0].buffer).toBeInstanceOf(SharedArrayBuffer);
      const got = await Promise.all(views.map((v) => worker.sha256(v)));
      expect(got).toEqual(views.map(sha256));
      // A view that does not start at the buffer's start: the worker hashes exactly those bytes.
      expect(await worker.sha256(views[1].subarray(4096, 9000))).toBe(sha256(views[1].subarray(4096, 9000)));
    } finally {
      await worker.close();
    }
  });

  it('hashes an ordinary buffer on the calling thread', async () => {
    const worker = new HashWorker();
    try {
      const b = randomBytes(70_000);
      expect(await worker.sha256(b)).toBe(sha256(b));
    } finally {
      await worker.close();
    }
  });

  it('once closed, refuses shared buffers with a message that says so', async () => {
    const worker = new HashWorker();
    await worker.close();
    const shared = new AlignedBufferPool(4096, true).take(4096);
    await expect(worker.sha256(shared)).rejects.toThrow(/hash worker was closed/);
  });
});
