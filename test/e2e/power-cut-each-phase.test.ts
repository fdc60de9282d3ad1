import { describe, it, expect, afterAll } from 'vitest';
import { watch, type FSWatcher } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { World, type SimulatedPi } from './world.js';
import { startCheck, TERMINAL, type CheckedUpdate } from './invariants.js';

// A power cut (SIGKILL of the daemon; the simulator boots the board again by the firmware's rules)
// just after the daemon persisted each phase. Whatever the timing, the update must end consistently
// (invariants.ts): applyComplete only with the new slot booted, committed and holding the image;
// otherwise a failure on the old slot with the old version. Never a success it did not reach.
//
// The phases are not listed here: a clean update is watched first and its phases are read from the
// daemon's transition log lines ({updateId, from, to, pid}), so a phase added to the workflow gets
// its cut without touching this file. A cut that misses its phase (the daemon had moved on by the
// time it was frozen) is retried with a new update, and after MAX_ATTEMPTS misses the test fails:
// a miss never passes as a cut.

const MAX_ATTEMPTS = 6;
const IMAGE = { rootfsBytes: 512 * 1024, bootBytes: 64 * 1024 };

interface Transition {
  updateId: string;
  to: string;
  pid: number;
}

/** Follows daemon.log from where it ends now, line by line, waking on every write (inotify). */
class LogTail {
  private offset: number;
  private rest = '';
  private watcher: FSWatcher;
  private wake: (() => void) | undefined;

  private constructor(
    private readonly fh: FileHandle,
    size: number,
    path: string,
  ) {
    this.offset = size;
    this.watcher = watch(path, () => this.wake?.());
  }

  static async open(pi: SimulatedPi): Promise<LogTail> {
    const path = join(pi.dir, 'daemon.log');
    return new LogTail(await open(path, 'r'), (await stat(path)).size, path);
  }

  /** The transitions written since the last call; waits up to `ms` for a write when there are none. */
  async transitions(ms: number): Promise<Transition[]> {
    let lines = await this.read();
    if (lines.length === 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
      lines = await this.read();
    }
    const out: Transition[] = [];
    for (const line of lines) {
      try {
        const o = JSON.parse(line) as Partial<Transition> & { from?: string };
        if (typeof o.updateId === 'string' && typeof o.from === 'string' && typeof o.to === 'string' && typeof o.pid === 'number') {
          out.push({ updateId: o.updateId, to: o.to, pid: o.pid });
        }
      } catch {
        // not a JSON log line (a crash trace): not a transition
      }
    }
    return out;
  }

  private async read(): Promise<string[]> {
    const buf = Buffer.alloc(64 * 1024);
    let text = '';
    for (;;) {
      const { bytesRead } = await this.fh.read(buf, 0, buf.length, this.offset);
      if (bytesRead === 0) break;
      this.offset += bytesRead;
      text += buf.subarray(0, bytesRead).toString('utf8');
    }
    const all = (this.rest + text).split('\n');
    this.rest = all.pop() ?? '';
    return all.filter((l) => l !== '');
  }

  async close(): Promise<void> {
    this.watcher.close();
    await this.fh.close();
  }
}

/** Every transition of `updateId` until it ends. */
async function transitionsUntilEnd(tail: LogTail, updateId: string): Promise<Transition[]> {
  const seen: Transition[] = [];
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    for (const t of await tail.transitions(200)) {
      if (t.updateId !== updateId) continue;
      seen.push(t);
      if (TERMINAL.includes(t.to)) return seen;
    }
  }
  throw new Error(`update ${updateId} did not end within 90 s (transitions seen: ${seen.map((t) => t.to).join(' → ')})`);
}

type CutResult = { hit: true; status: string } | { hit: false; why: string };

/**
 * Freezes the daemon (SIGSTOP) the moment it logs entering `phase`, reads what is on disk with
 * `piota status --json`, and cuts the power (SIGKILL) only if the phase on disk is still `phase`.
 * Otherwise it lets the daemon go on and reports the miss.
 */
async function cutAtPhase(pi: SimulatedPi, tail: LogTail, updateId: string, phase: string): Promise<CutResult> {
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    for (const t of await tail.transitions(200)) {
      if (t.updateId !== updateId) continue;
      if (TERMINAL.includes(t.to) && t.to !== phase) return { hit: false, why: `the update ended ${t.to} before '${phase}' was seen` };
      if (t.to !== phase) continue;
      try {
        process.kill(t.pid, 'SIGSTOP');
      } catch {
        return { hit: false, why: `the daemon (pid ${t.pid}) had exited` };
      }
      const bootCount = (await pi.sim()).bootCount;
      const onDisk = await pi.status().catch((err: Error) => {
        pi.thaw(t.pid);
        throw err;
      });
      if (onDisk.update?.phase !== phase) {
        pi.thaw(t.pid);
        return { hit: false, why: `frozen with '${onDisk.update?.phase ?? onDisk.lastResult?.phase}' on disk` };
      }
      await pi.cutFrozen(t.pid, bootCount);
      return { hit: true, status: onDisk.update.status };
    }
  }
  return { hit: false, why: `'${phase}' was not logged within 90 s` };
}

// The phases of a clean update, as the daemon logs them; the ones its first daemon (before the
// trial reboot) logged before the phase that asks for that reboot. A cut in those must lose nothing.
const world = await World.create();
afterAll(() => world.close());
const discovery = await (async () => {
  const pi = await world.pi('discover', { bootRecord: true });
  const bundle = await world.bundle('fw-discover', { version: '2.0.0', ...IMAGE });
  const tail = await LogTail.open(pi);
  try {
    const answer = await world.invoke(pi.deviceId, 'firmwareUpdate', { fwPackageUri: bundle.url });
    const seen = await transitionsUntilEnd(tail, answer.payload.updateId as string);
    const firstPid = seen[0]?.pid;
    const beforeReboot = seen.filter((t) => t.pid === firstPid).map((t) => t.to);
    return { path: seen.map((t) => t.to), mustComplete: beforeReboot.slice(0, -1) };
  } finally {
    await tail.close();
  }
})();
const phases = discovery.path.filter((p) => !TERMINAL.includes(p) && p !== 'waiting');

describe('a power cut just after each phase is persisted', () => {
  it('the phases were read from a clean update', () => {
    // Discovery found the workflow: it ran to applyComplete, through a download and a trial reboot.
    expect(discovery.path[discovery.path.length - 1]).toBe('applyComplete');
    expect(phases).toContain('downloading');
    expect(discovery.mustComplete).toContain('downloading');
    expect(phases.length).toBeGreaterThan(discovery.mustComplete.length);
    console.log(`phases of a clean update: ${discovery.path.join(' → ')}; a cut must lose nothing in: ${discovery.mustComplete.join(', ')}`);
  });

  it.each(phases)('after %s: the outcome is consistent', async (phase) => {
    const pi = await world.pi(`cut-${phase}`, { bootRecord: true });
    const misses: string[] = [];
    let previous: CheckedUpdate | undefined;
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const bundle = await world.bundle(`fw-${phase}-${attempt}`, { version: `2.0.${attempt}`, ...IMAGE });
      const check = await startCheck(world, pi, bundle, previous);
      const tail = await LogTail.open(pi);
      let cut: CutResult;
      let updateId: string;
      try {
        const answer = await world.invoke(pi.deviceId, 'firmwareUpdate', { fwPackageUri: bundle.url });
        expect(answer.status).toBe(200);
        updateId = answer.payload.updateId as string;
        cut = await cutAtPhase(pi, tail, updateId, phase);
      } finally {
        await tail.close();
      }
      const done = await check.finish(updateId);
      // Every update ends consistently, a missed cut's included.
      expect(done.violations, `update ${updateId} (attempt ${attempt}, ${cut.hit ? `cut in '${phase}'` : 'not cut'})`).toEqual([]);
      if (cut.hit) {
        if (discovery.mustComplete.includes(phase)) expect(done.final, `a cut in '${phase}', before the trial reboot was asked for`).toBe('applyComplete');
        if (done.final !== 'applyComplete') expect(done.errorCode).toMatch(/^(trialFailed|trialUnhealthy)$/);
        console.log(`power cut in '${phase}' (status ${cut.status}) on attempt ${attempt} → ${done.final}${done.errorCode ? ` (${done.errorCode})` : ''}`);
        return;
      }
      misses.push(`attempt ${attempt}: ${cut.why}`);
      previous = done;
    }
    throw new Error(`could not cut the power in '${phase}' in ${MAX_ATTEMPTS} updates:\n${misses.join('\n')}`);
  }, MAX_ATTEMPTS * 60_000);
});
