import { Worker } from 'node:worker_threads';

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
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (r: CheckResult) => void; reject: (err: Error) => void }>();
  private next = 0;
  private failure: Error | null = null;

  constructor() {
    this.worker = new Worker(PROGRAM, { eval: true, resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 4 } });
    this.worker.unref();
    this.worker.on('message', (m: { id: number; bad?: number[]; sha256?: Uint8Array | null; error?: string }) => {
      const call = this.pending.get(m.id);
      if (!call) return;
      this.pending.delete(m.id);
      if (m.error !== undefined) call.reject(new Error(`the block checker failed: ${m.error}`));
      else call.resolve({ bad: m.bad ?? [], sha256: m.sha256 ? Buffer.from(m.sha256.buffer, m.sha256.byteOffset, m.sha256.length) : null });
    });
    const fail = (err: Error) => {
      this.failure ??= err;
      for (const call of this.pending.values()) call.reject(err);
      this.pending.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`the block checker exited (code ${code})`)));
  }

  /**
   * Checks `blocks` (numbers within the chunk, each `blockSize` bytes of `chunk`) against `keys`
   * (keyBytes per listed block, in the same order), then hashes the whole chunk. `chunk` must lie
   * over a SharedArrayBuffer (AlignedBufferPool with `shared`).
   */
  check(chunk: Buffer, blockSize: number, blocks: Int32Array, keys: Uint8Array, keyBytes: number): Promise<CheckResult> {
    if (!(chunk.buffer instanceof SharedArrayBuffer)) return Promise.reject(new Error('the block checker hashes shared buffers only'));
    if (keys.length !== blocks.length * keyBytes) return Promise.reject(new Error(`${blocks.length} blocks to check but ${keys.length} key bytes`));
    if (this.failure) return Promise.reject(this.failure);
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, buffer: chunk.buffer, offset: chunk.byteOffset, length: chunk.length, blockSize, blocks, keys, keyBytes });
    });
  }

  async close(): Promise<void> {
    this.failure ??= new Error('the block checker was closed');
    await this.worker.terminate();
  }
}
