import { describe, it, expect } from 'vitest';
import type { DeviceState, Phase } from '../../src/agent/device-state.js';
import { UpdateRunner } from '../../src/agent/workflow/runner.js';
import { PHASES, isCancellable, isTerminal, MAX_ENTRIES } from '../../src/agent/workflow/spec.js';
import { BootError } from '../../src/boot/backend.js';
import { SlotError } from '../../src/slots/slot-error.js';
import { FakeBoot, FakeClock, MemoryStorage, fakePorts, silentLogger, stateWith, testConfig, updateIn } from './fakes/ports.js';

const rootfsB = testConfig().slots.B.rootfs;
const bundle = (image: Buffer) => ({
  version: '2.0.0', securityVersion: 7, headerLength: 100, totalBytes: 100 + image.length, chunkCount: 1,
  payloads: [{ name: 'rootfs', imageSize: image.length, imageSha256: sha256(image) }],
});
function sha256(b: Buffer) {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('node:crypto') as typeof import('node:crypto')).createHash('sha256').update(b).digest('hex');
}

/** A runner on fakes; `log` records saves (with the phase saved) and boot calls, in order. */
function harness(state: DeviceState, opts: { booted?: 'A' | 'B'; hubReached?: boolean; storage?: MemoryStorage; windowOpen?: () => Promise<void>; failSaves?: { count: number }; shutdownUnderWay?: () => Promise<boolean> } = {}) {
  const log: string[] = [];
  const boot = new FakeBoot(opts.booted ?? 'A', 'A', opts.booted === 'B');
  const clock = new FakeClock();
  const originalCalls = boot.calls;
  boot.calls = new Proxy(originalCalls, {
    get(target, prop, receiver) {
      if (prop === 'push') return (...items: string[]) => { log.push(...items.map((i) => `boot:${i}`)); return target.push(...items); };
      return Reflect.get(target, prop, receiver);
    },
  });
  const storage = opts.storage ?? new MemoryStorage([rootfsB, testConfig().slots.B.boot]);
  const ports = fakePorts({
    boot,
    clock,
    storage,
    hubReached: opts.hubReached ? Promise.resolve() : new Promise(() => undefined),
    applyWindowOpen: opts.windowOpen ?? (async () => undefined),
    shutdownUnderWay: opts.shutdownUnderWay ?? (async () => false),
  });
  const saves: Phase[] = [];
  let statusChanges = 0;
  const runner = new UpdateRunner({
    state,
    saveState: async (next) => {
      if (opts.failSaves && --opts.failSaves.count >= 0) throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
      saves.push(next.update!.phase);
      log.push(`save:${next.update!.phase}`);
    },
    statusChanged: () => statusChanges++,
    refreshInventory: async () => undefined,
    logger: silentLogger,
    settings: { config: testConfig(), trustedKeys: [] },
    ports,
  });
  return { runner, boot, clock, storage, ports, saves, log, statusChanges: () => statusChanges };
}

/** Lets the runner run (the fake clock never waits) until `done`, for at most 10 s of real time (a first dynamic import is slow). */
async function until(done: () => boolean) {
  const deadline = Date.now() + 10_000;
  while (!done() && Date.now() < deadline) await new Promise((r) => setImmediate(r));
}

async function runToEnd(state: DeviceState, h: ReturnType<typeof harness>, resumed = true) {
  h.runner.start(resumed);
  await until(() => isTerminal(state.update!.phase));
  await h.runner.stop();
}

describe('the update runner, row by row', () => {
  const image = Buffer.alloc(4096, 7);

  it('verifying → rebooting: the slot reads back right, rebooting is persisted before the trial reboot is asked for', async () => {
    const state = stateWith(updateIn('verifying', { bundle: bundle(image) }));
    const h = harness(state);
    image.copy(h.storage.partitions.get(rootfsB)!);
    await runToEnd(state, h, false);
    // Nobody rebooted us (a fake firmware): the reboot timed out, and the update ended applyFailed.
    expect(h.log.indexOf('save:rebooting')).toBeLessThan(h.log.indexOf('boot:startTrial B'));
    expect(state.update!.phase).toBe('applyFailed');
    expect(state.update!.error?.code).toBe('rebootFailed');
    expect(state.slots.B?.version).toBe('2.0.0');
    // The failed trial left [tryboot] on the committed slot.
    expect(h.boot.tryboot).toBe('A');
    expect(h.log.at(-2)).toBe('boot:clearTrial');
  });

  it('rebooting: a reboot late past rebootTimeoutSeconds while the system is shutting down is waited for, and fails only once the shutdown is gone', async () => {
    const state = stateWith(updateIn('rebooting', { bundle: bundle(image) }));
    let checks = 0;
    const h = harness(state, { shutdownUnderWay: async () => ++checks <= 3 });
    await runToEnd(state, h, false);
    expect(h.clock.naps).toEqual([testConfig().rebootTimeoutSeconds * 1000, 10_000, 10_000, 10_000]);
    expect(state.update!.error).toEqual({ code: 'rebootFailed', message: `the trial reboot into slot B was requested but did not happen within ${testConfig().rebootTimeoutSeconds + 30} s` });
  });

  it('rebooting: while the shutdown is under way nothing points [tryboot] back; the stop it brings leaves the phase to resume', async () => {
    const state = stateWith(updateIn('rebooting', { bundle: bundle(image) }));
    let checks = 0;
    const h = harness(state, { shutdownUnderWay: async () => (++checks, true) });
    h.runner.start(false);
    await until(() => checks >= 5);
    await h.runner.stop();
    expect(state.update!.phase).toBe('rebooting');
    expect(h.boot.calls).toEqual(['startTrial B']);
    expect(h.boot.tryboot).toBe('B');
  });

  it('verifying fails with readbackMismatch when the medium holds other bytes', async () => {
    const state = stateWith(updateIn('verifying', { bundle: bundle(image) }));
    const h = harness(state);
    await runToEnd(state, h, false);
    expect(state.update!.phase).toBe('applyFailed');
    expect(state.update!.error?.code).toBe('readbackMismatch');
    expect(h.boot.calls).not.toContain('startTrial B');
  });

  it('rebooting found at start-up → checkingBoot → trial → committing → applyComplete, raising the floor', async () => {
    const state = stateWith(updateIn('rebooting', { bundle: bundle(image) }));
    const h = harness(state, { booted: 'B', hubReached: true });
    await runToEnd(state, h);
    expect(h.saves).toEqual(['rebooting', 'checkingBoot', 'trial', 'trial', 'committing', 'applyComplete']);
    expect(state.update!.phase).toBe('applyComplete');
    expect(state.update!.times.lastFirmwareUpdate).not.toBeNull();
    expect(h.boot.committed).toBe('B');
    expect(h.ports.floor.value).toBe(7);
    // The commit is on disk before applyComplete is persisted.
    expect(h.log.indexOf('boot:commit B')).toBeLessThan(h.log.indexOf('save:applyComplete'));
  });

  it('checkingBoot on the old slot: the firmware fell back → applyFailed/trialFailed', async () => {
    const state = stateWith(updateIn('rebooting'));
    const h = harness(state, { booted: 'A' });
    await runToEnd(state, h);
    expect(state.update!.phase).toBe('applyFailed');
    expect(state.update!.error?.code).toBe('trialFailed');
    expect(h.boot.calls).not.toContain('commit B');
  });

  it('trial without the hub in time → rollingBack, which reboots into the old slot', async () => {
    const state = stateWith(updateIn('trial'));
    const h = harness(state, { booted: 'B', hubReached: false });
    await runToEnd(state, h);
    expect(h.saves.slice(0, 3)).toEqual(['trial', 'trial', 'rollingBack']);
    expect(h.boot.calls).toContain('reboot');
    expect(h.boot.calls).not.toContain('commit B');
    expect(state.update!.phase).toBe('applyFailed');
  });

  it('rollingBack found on the old slot → applyFailed, keeping the reason of the rollback', async () => {
    const state = stateWith(updateIn('rollingBack', { error: { code: 'trialUnhealthy', message: 'x' } }));
    const h = harness(state, { booted: 'A' });
    await runToEnd(state, h);
    expect(state.update!.phase).toBe('applyFailed');
    expect(state.update!.error?.code).toBe('trialUnhealthy');
    expect(h.boot.calls).not.toContain('reboot');
  });

  it('committing found on the old slot → applyFailed/trialFailed, never a commit', async () => {
    const state = stateWith(updateIn('committing'));
    const h = harness(state, { booted: 'A' });
    await runToEnd(state, h);
    expect(state.update!.phase).toBe('applyFailed');
    expect(h.boot.calls).not.toContain('commit B');
  });

  it('a failed commit rolls back', async () => {
    const state = stateWith(updateIn('committing'));
    const h = harness(state, { booted: 'B' });
    h.boot.failNext.commit = new BootError('io', 'autoboot.txt: EIO');
    await runToEnd(state, h);
    expect(h.saves).toContain('rollingBack');
    expect(h.boot.calls).toContain('reboot');
    expect(state.update!.phase).toBe('applyFailed');
  });

  it('downloadComplete waits for the window, then goes on to verifying', async () => {
    let open!: () => void;
    const state = stateWith(updateIn('downloadComplete', { bundle: bundle(image) }));
    const h = harness(state, { windowOpen: () => new Promise<void>((r) => (open = r)) });
    h.runner.start(false);
    await until(() => open !== undefined);
    expect(state.update!.phase).toBe('downloadComplete');
    open();
    await until(() => isTerminal(state.update!.phase));
    await h.runner.stop();
    expect(h.saves).toContain('verifying');
    expect(state.update!.times.startedApplyingImage).not.toBeNull();
  });
});

describe('the loop guard', () => {
  it.each(PHASES.filter((p) => !isTerminal(p)))('ends an update found in %s once more than MAX_ENTRIES times with bootLoop, by its loop row', async (phase) => {
    const state = stateWith(updateIn(phase, { entries: { [phase]: MAX_ENTRIES } }));
    const h = harness(state, { booted: 'B' });
    await runToEnd(state, h);
    expect(state.update!.error?.code).toBe('bootLoop');
    expect(['downloadFailed', 'applyFailed']).toContain(state.update!.phase);
    if (phase === 'trial' || phase === 'committing') expect(h.saves).toContain('rollingBack');
  });

  it('counts a phase found at start-up as entered again, and persists the count before the work', async () => {
    const state = stateWith(updateIn('checkingBoot', { entries: { checkingBoot: 2 } }));
    const h = harness(state, { booted: 'A' });
    await runToEnd(state, h);
    expect(h.saves[0]).toBe('checkingBoot');
    expect(state.update!.entries.checkingBoot).toBe(3);
  });
});

describe('cancel', () => {
  it.each(PHASES.filter((p) => !isTerminal(p)))('in %s: accepted only before applying, and then persisted as downloadFailed/cancelled', async (phase) => {
    const state = stateWith(updateIn(phase));
    const h = harness(state, { booted: 'B', windowOpen: () => new Promise(() => undefined) });
    const accepted = await h.runner.cancel();
    expect(accepted).toBe(isCancellable(phase));
    if (accepted) {
      expect(state.update!.phase).toBe('downloadFailed');
      expect(state.update!.error?.code).toBe('cancelled');
      expect(h.saves.at(-1)).toBe('downloadFailed');
      expect(h.boot.tryboot).toBe('A');
    } else {
      expect(state.update!.phase).toBe(phase);
    }
    await h.runner.stop();
  });

  it('never answers "cancelled" for an update that goes on to apply, whatever the timing', async () => {
    const image = Buffer.alloc(4096, 3);
    for (let ticks = 0; ticks < 12; ticks++) {
      let open!: () => void;
      const state = stateWith(updateIn('downloadComplete', { bundle: bundle(image) }));
      const h = harness(state, { windowOpen: () => new Promise<void>((r) => (open = r)) });
      h.runner.start(false);
      await until(() => open !== undefined);
      open();
      for (let i = 0; i < ticks; i++) await Promise.resolve();
      const accepted = await h.runner.cancel();
      await until(() => isTerminal(state.update!.phase));
      await h.runner.stop();
      if (accepted) {
        expect(state.update!.error?.code, `after ${ticks} ticks`).toBe('cancelled');
        expect(h.saves, `after ${ticks} ticks`).not.toContain('verifying');
      } else {
        expect(h.saves, `after ${ticks} ticks`).toContain('verifying');
      }
    }
  });
});

describe('a state disk that refuses a save', () => {
  it('keeps the last persisted phase in memory (never a status that is not on disk) and tries again later', async () => {
    const image = Buffer.alloc(4096, 5);
    const state = stateWith(updateIn('verifying', { bundle: bundle(image) }));
    const failSaves = { count: 1 };
    const h = harness(state, { failSaves });
    image.copy(h.storage.partitions.get(rootfsB)!);
    h.runner.start(false);
    await until(() => failSaves.count === 0); // the one refused save has happened
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    expect(state.update!.phase).toBe('verifying');
    expect(h.saves).toEqual([]);
    expect(h.boot.calls).not.toContain('startTrial B');
    await h.runner.stop();
  });
});

describe('stop', () => {
  it('ends the work of a long phase at once, without a transition; the next start resumes it', async () => {
    const state = stateWith(updateIn('downloadComplete'));
    let waiting = false;
    const h = harness(state, {
      windowOpen: ((_u: unknown, signal: AbortSignal) => {
        waiting = true;
        return new Promise((_r, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
      }) as never,
    });
    h.runner.start(false);
    await until(() => waiting);
    await h.runner.stop();
    expect(state.update!.phase).toBe('downloadComplete');
    expect(h.saves).toEqual([]);
  });
});

describe('stop while the reports are flushed before a reboot', () => {
  it('does not wait for the hub: the stop ends the flush at once and the phase stays on disk', async () => {
    const image = Buffer.alloc(4096, 6);
    const state = stateWith(updateIn('verifying', { bundle: bundle(image) }));
    const h = harness(state);
    image.copy(h.storage.partitions.get(rootfsB)!);
    let flushing = false;
    (h.ports as { flushReports: unknown }).flushReports = () => {
      flushing = true;
      return new Promise(() => undefined); // a hub that never acknowledges
    };
    h.runner.start(false);
    await until(() => flushing);
    const started = Date.now();
    await h.runner.stop();
    expect(Date.now() - started).toBeLessThan(1000);
    expect(state.update!.phase).toBe('rebooting');
    expect(h.boot.calls).not.toContain('startTrial B');
  });
});

describe('errors are mapped once, to the closed list', () => {
  it('a busy slot is slotUnavailable', async () => {
    const state = stateWith(updateIn('downloading'));
    const h = harness(state);
    const ports = h.ports as { http: unknown };
    ports.http = async () => {
      throw new SlotError('busy', rootfsB, 'the kernel refuses exclusive access');
    };
    await runToEnd(state, h, false);
    expect(state.update!.error?.code).toBe('slotUnavailable');
    expect(state.update!.phase).toBe('downloadFailed');
  });

  it('boot firmware trouble is bootConfigError', async () => {
    const image = Buffer.alloc(4096, 9);
    const state = stateWith(updateIn('verifying', { bundle: bundle(image) }));
    const h = harness(state);
    image.copy(h.storage.partitions.get(rootfsB)!);
    h.boot.failNext.startTrial = new BootError('badAutoboot', '/boot/bootconfig/autoboot.txt: no [all] section');
    await runToEnd(state, h, false);
    expect(state.update!.error?.code).toBe('bootConfigError');
    expect(state.update!.phase).toBe('applyFailed');
  });

  it('a bug is internalError, with its message', async () => {
    const state = stateWith(updateIn('verifying', { bundle: null }));
    const h = harness(state);
    await runToEnd(state, h, false);
    expect(state.update!.error).toMatchObject({ code: 'internalError', message: 'no bundle was recorded for this update' });
  });

  it('the download points [tryboot] back at the committed slot before it writes', async () => {
    const state = stateWith(updateIn('downloading'));
    const h = harness(state);
    h.boot.tryboot = 'B';
    await runToEnd(state, h, false);
    expect(h.boot.calls[0]).toBe('clearTrial');
  });
});
