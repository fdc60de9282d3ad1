import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

// The worker's whole program: hash a view of a shared buffer and answer its hex digest. Inline, so
// the same code runs from dist/ and under the test runner, with no file to resolve.
const PROGRAM = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
parentPort.on('message', ({ id, buffer, offset, length }) => {
  try {
    parentPort.postMessage({ id, hex: createHash('sha256').update(new Uint8Array(buffer, offset, length)).digest('hex') });
  } catch (err) {
    parentPort.postMessage({ id, error: String(err && err.message || err) });
  }
});
`;

/**
 * sha256 on a thread of its own, without copying: a buffer over a SharedArrayBuffer (from
 * AlignedBufferPool) is hashed in place by the worker while the main thread receives and decrypts
 * the next chunk. Any other buffer is hashed here, on the calling thread. One worker serves one
 * install; it never keeps the process alive, and `close` ends it.
 */
export class HashWorker {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (hex: string) => void; reject: (err: Error) => void }>();
  private next = 0;
  private failure: Error | null = null;

  constructor() {
    this.worker = new Worker(PROGRAM, { eval: true, resourceLimits: { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 1 } });
    this.worker.unref();
    this.worker.on('message', (m: { id: number; hex?: string; error?: string }) => {
      const call = this.pending.get(m.id);
      if (!call) return;
      this.pending.delete(m.id);
      if (m.hex !== undefined) call.resolve(m.hex);
      else call.reject(new Error(`the hash worker failed: ${m.error}`));
    });
    const fail = (err: Error) => {
      this.failure ??= err;
      for (const call of this.pending.values()) call.reject(err);
      this.pending.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`the hash worker exited (code ${code})`)));
  }

  /** The sha256 (hex) of `bytes`. */
  sha256(bytes: Buffer): Promise<string> {
    if (!(bytes.buffer instanceof SharedArrayBuffer)) return Promise.resolve(createHash('sha256').update(bytes).digest('hex'));
    if (this.failure) return Promise.reject(this.failure);
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, buffer: bytes.buffer, offset: bytes.byteOffset, length: bytes.length });
    });
  }

  async close(): Promise<void> {
    this.failure ??= new Error('the hash worker was closed');
    await this.worker.terminate();
  }
}
