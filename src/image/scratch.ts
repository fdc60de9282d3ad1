import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { runTool, stopRunningTools, toolText } from './run-tool.js';

/**
 * The loop devices, mounts and temporary directories one command makes, undone in reverse order by
 * `release()` on every exit path: success, an error, or SIGINT/SIGTERM (`releaseOnSignals`).
 *
 * This kernel (and others) may not scan partition tables on loop devices (`losetup -P` makes no
 * loopNpM), so each partition gets a loop device of its own, with --offset and --sizelimit.
 */
export class Scratch {
  private readonly undo: (() => Promise<unknown>)[] = [];
  private readonly aborts: (() => Promise<unknown>)[] = [];
  /** Attaches and mounts under way: a signal that comes meanwhile waits for them, then undoes them too. */
  private readonly inflight = new Set<Promise<unknown>>();
  /**
   * Files this command writes through loop devices (its own output, which nothing else uses):
   * release() detaches any device still over them, also one that an attach made and never named.
   */
  private readonly loopFiles = new Set<string>();

  private track<T>(work: () => Promise<T>): Promise<T> {
    const op = work();
    this.inflight.add(op);
    void op.catch(() => undefined).finally(() => this.inflight.delete(op));
    return op;
  }

  /** A loop device over `length` bytes of `file` from `offset`; read-only unless `writable`. */
  async loop(file: string, offset: number, length: number, writable: boolean): Promise<string> {
    const args = ['--find', '--show', '--offset', String(offset), '--sizelimit', String(length)];
    if (!writable) args.push('--read-only');
    if (writable) this.loopFiles.add(file);
    return this.track(async () => {
      const dev = (await toolText('losetup', [...args, file], { finishOnSignal: true })).trim();
      this.undo.push(() => runTool('losetup', ['--detach', dev], { allowFailure: true }));
      return dev;
    });
  }

  /** Mounts `device` (ext4) at a new directory under `dir` and returns that directory. */
  async mount(device: string, at: string, options = 'rw'): Promise<string> {
    await mkdir(at, { recursive: true });
    return this.track(async () => {
      await runTool('mount', ['-t', 'ext4', '-o', options, device, at], { finishOnSignal: true });
      this.undo.push(() => runTool('umount', [at], { allowFailure: true }));
      return at;
    });
  }

  /** Unmounts `at` now (it was mounted by this Scratch), so its file system can be checked or copied. */
  async unmount(at: string): Promise<void> {
    await runTool('umount', [at]);
  }

  /** A temporary directory under `parent`, removed on release. */
  async tempDir(parent: string, prefix: string): Promise<string> {
    const dir = await mkdtemp(join(parent, prefix));
    this.undo.push(() => rm(dir, { recursive: true, force: true }));
    return dir;
  }

  /** Undoes everything, newest first; never throws (each step is best effort). */
  async release(): Promise<void> {
    await Promise.allSettled([...this.inflight]);
    while (this.undo.length > 0) {
      const step = this.undo.pop()!;
      await step().catch(() => undefined);
    }
    // Any device over those files that this Scratch never learnt of (an attach that failed late).
    for (const file of this.loopFiles) {
      const left = await toolText('losetup', ['--list', '--noheadings', '--output', 'NAME', '--associated', file], { allowFailure: true }).catch(() => '');
      for (const dev of left.split('\n').map((l) => l.trim()).filter(Boolean)) {
        await runTool('losetup', ['--detach', dev], { allowFailure: true }).catch(() => undefined);
      }
    }
  }

  /** Also done when a signal ends the command (after release): e.g. deleting a half-written output. */
  onAbort(step: () => Promise<unknown>): void {
    this.aborts.push(step);
  }

  /**
   * Releases on SIGINT/SIGTERM too, then exits as the signal would have (130/143). Returns the
   * function that removes the handlers.
   */
  releaseOnSignals(): () => void {
    const handlers = (['SIGINT', 'SIGTERM'] as const).map((signal) => {
      const h = () => {
        // The tools first: a loop device still open by mkfs or e2fsck would outlive its detach.
        void stopRunningTools()
          .then(() => this.release())
          .then(() => Promise.allSettled(this.aborts.map((a) => a())))
          .finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
      };
      process.once(signal, h);
      return [signal, h] as const;
    });
    return () => handlers.forEach(([s, h]) => process.off(s, h));
  }
}
