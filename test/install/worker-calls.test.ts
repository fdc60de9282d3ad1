import { describe, expect, it } from 'vitest';
import { WorkerCalls } from '../../src/install/worker-calls.js';

// A real worker thread running a tiny program: doubles n, answers an error for n < 0, and exits the
// thread for n === 13 (a worker that dies with calls under way).
const PROGRAM = `
const { parentPort } = require('node:worker_threads');
parentPort.on('message', ({ id, n }) => {
  if (n === 13) process.exit(7);
  if (n < 0) parentPort.postMessage({ id, error: 'negative ' + n });
  else setTimeout(() => parentPort.postMessage({ id, twice: n * 2 }), 5 - (n % 5));
});
`;
const LIMITS = { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 1 };

describe('WorkerCalls', () => {
  it('matches each answer to its call, whatever order they come back in', async () => {
    const calls = new WorkerCalls<{ twice: number }>(PROGRAM, 'the doubler', LIMITS);
    const answers = await Promise.all([1, 2, 3, 4, 5, 6].map((n) => calls.call({ n })));
    expect(answers.map((a) => a.twice)).toEqual([2, 4, 6, 8, 10, 12]);
    await calls.close();
  });

  it('an error answer rejects that call only, naming the worker', async () => {
    const calls = new WorkerCalls<{ twice: number }>(PROGRAM, 'the doubler', LIMITS);
    await expect(calls.call({ n: -1 })).rejects.toThrow('the doubler failed: negative -1');
    expect((await calls.call({ n: 4 })).twice).toBe(8);
    await calls.close();
  });

  it('a worker that exits rejects the calls under way and every later one, with its exit code', async () => {
    const calls = new WorkerCalls<{ twice: number }>(PROGRAM, 'the doubler', LIMITS);
    const slow = calls.call({ n: 1 });
    await expect(calls.call({ n: 13 })).rejects.toThrow('the doubler exited (code 7)');
    await expect(slow).rejects.toThrow('the doubler exited (code 7)');
    await expect(calls.call({ n: 2 })).rejects.toThrow('the doubler exited (code 7)');
    await calls.close();
  });

  it('once closed, refuses calls saying so', async () => {
    const calls = new WorkerCalls<{ twice: number }>(PROGRAM, 'the doubler', LIMITS);
    await calls.close();
    await expect(calls.call({ n: 2 })).rejects.toThrow('the doubler was closed');
  });
});
