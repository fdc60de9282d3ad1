import { Worker } from 'node:worker_threads';

/**
 * Calls to one worker thread running an inline `program` (CommonJS text, so the same code runs from
 * dist/ and under the test runner, with no file to resolve). The program answers each message
 * `{ id, ... }` with `{ id, ...reply }`, or `{ id, error }`. The worker never keeps the process
 * alive; once it fails or exits, every call under way and every later one is refused with why.
 */
export class WorkerCalls<Reply> {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (reply: Reply) => void; reject: (err: Error) => void }>();
  private next = 0;
  private failure: Error | null = null;

  /** `name` is how errors call the worker ("the hash worker"). */
  constructor(
    program: string,
    private readonly name: string,
    limits: { maxOldGenerationSizeMb: number; maxYoungGenerationSizeMb: number },
  ) {
    this.worker = new Worker(program, { eval: true, resourceLimits: limits });
    this.worker.unref();
    this.worker.on('message', (m: Reply & { id: number; error?: string }) => {
      const call = this.pending.get(m.id);
      if (!call) return;
      this.pending.delete(m.id);
      if (m.error !== undefined) call.reject(new Error(`${name} failed: ${m.error}`));
      else call.resolve(m);
    });
    const fail = (err: Error) => {
      this.failure ??= err;
      for (const call of this.pending.values()) call.reject(err);
      this.pending.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`${name} exited (code ${code})`)));
  }

  /** Posts `message` (its id added) and resolves with the worker's answer to it. */
  call(message: Record<string, unknown>): Promise<Reply> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...message, id });
    });
  }

  async close(): Promise<void> {
    this.failure ??= new Error(`${this.name} was closed`);
    await this.worker.terminate();
  }
}
