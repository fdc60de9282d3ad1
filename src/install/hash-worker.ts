import { createHash } from 'node:crypto';
import { WorkerCalls } from './worker-calls.js';

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
  private readonly calls = new WorkerCalls<{ hex: string }>(PROGRAM, 'the hash worker', { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 1 });

  /** The sha256 (hex) of `bytes`. */
  async sha256(bytes: Buffer): Promise<string> {
    if (!(bytes.buffer instanceof SharedArrayBuffer)) return createHash('sha256').update(bytes).digest('hex');
    return (await this.calls.call({ buffer: bytes.buffer, offset: bytes.byteOffset, length: bytes.length })).hex;
  }

  close(): Promise<void> {
    return this.calls.close();
  }
}
