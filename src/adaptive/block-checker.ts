import { WorkerCalls } from '../install/worker-calls.js';

// The worker's whole program: re-hash the listed blocks of a chunk against their index keys and,
// when all hold, hash the whole chunk; in place, over a shared buffer. Inline, so the same code runs
// from dist/ and under the test runner, with no file to resolve.
const PROGRAM = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
parentPort.on('message', ({ id, buffer, offset, length, blockSize, blocks, keys, keyBytes }) => {
  try {
    const bytes = new Uint8Array(buffer, offset, length);
    const bad = [];
    for (let i = 0; i < blocks.length; i++) {
      const at = blocks[i] * blockSize;
      const d = createHash('sha256').update(bytes.subarray(at, at + blockSize)).digest();
      for (let k = 0; k < keyBytes; k++) {
        if (d[k] !== keys[i * keyBytes + k]) {
          bad.push(blocks[i]);
          break;
        }
      }
    }
    const sha256 = bad.length === 0 ? createHash('sha256').update(bytes).digest() : null;
    parentPort.postMessage({ id, bad, sha256 });
  } catch (err) {
    parentPort.postMessage({ id, error: String((err && err.message) || err) });
  }
});
`;

export interface CheckResult {
  /** Blocks (numbers within the chunk) whose sha256 does not start with their key: not to be used. */
  bad: number[];
  /** The sha256 of the whole chunk, when no block was bad (null otherwise: it is hashed again once they are replaced). */
  sha256: Buffer | null;
}

/**
 * The adaptive install's hashing, on a thread of its own: every reused block re-hashed against its
 * lookup key, then the assembled chunk's sha256, in place over a buffer from a shared
 * AlignedBufferPool (no copy), while the main thread reads and fetches the next chunks. One checker
 * serves one install; it never keeps the process alive, and `close` ends it.
 */
export class BlockChecker {
  private readonly calls = new WorkerCalls<{ bad: number[]; sha256: Uint8Array | null }>(PROGRAM, 'the block checker', { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 4 });

  /**
   * Checks `blocks` (numbers within the chunk, each `blockSize` bytes of `chunk`) against `keys`
   * (keyBytes per listed block, in the same order), then hashes the whole chunk. `chunk` must lie
   * over a SharedArrayBuffer (AlignedBufferPool with `shared`).
   */
  async check(chunk: Buffer, blockSize: number, blocks: Int32Array, keys: Uint8Array, keyBytes: number): Promise<CheckResult> {
    if (!(chunk.buffer instanceof SharedArrayBuffer)) throw new Error('the block checker hashes shared buffers only');
    if (keys.length !== blocks.length * keyBytes) throw new Error(`${blocks.length} blocks to check but ${keys.length} key bytes`);
    const m = await this.calls.call({ buffer: chunk.buffer, offset: chunk.byteOffset, length: chunk.length, blockSize, blocks, keys, keyBytes });
    return { bad: m.bad, sha256: m.sha256 ? Buffer.from(m.sha256.buffer, m.sha256.byteOffset, m.sha256.length) : null };
  }

  close(): Promise<void> {
    return this.calls.close();
  }
}
