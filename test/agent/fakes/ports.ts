import { readFileSync } from 'node:fs';
import { pino } from 'pino';
import type { Clock } from '../../../src/agent/clock.js';
import { validateConfig, type DaemonConfig } from '../../../src/agent/config.js';
import type { DeviceState, Phase, UpdateRecord } from '../../../src/agent/device-state.js';
import type { SlotWriter, SlotStorage } from '../../../src/agent/ports.js';
import type { WorkflowPorts } from '../../../src/agent/workflow/context.js';
import type { BootBackend, Slot } from '../../../src/boot/backend.js';

/** Fakes of the workflow's ports: each records what was asked of it, so a test can assert on it. */

export const silentLogger = pino({ level: 'silent' });
const example = JSON.parse(readFileSync(new URL('../../../config.example.json', import.meta.url), 'utf8'));

export function testConfig(change: Record<string, unknown> = {}): DaemonConfig {
  return validateConfig({
    ...example,
    rebootTimeoutSeconds: 0.2,
    trialTimeoutSeconds: 1,
    // Adaptive off: the adaptive step reads the slots' partitions itself (not through the fake
    // SlotStorage), and config.example.json names a real Pi's (/dev/mmcblk0p5).
    download: { adaptive: false, retry: { attempts: 3, firstDelaySeconds: 0.01, maxDelaySeconds: 0.02 } },
    ...change,
  });
}

/** A clock that moves only when someone sleeps on it: timeouts pass at once, and in order. */
export class FakeClock implements Clock {
  t: number;
  mono = 0;
  sync = false;
  naps: number[] = [];
  constructor(start = Date.parse('2026-11-29T12:00:00Z')) {
    this.t = start;
  }
  now = () => this.t;
  monotonic = () => this.mono;
  synchronized = () => this.sync;
  sleep = async (ms: number, signal: AbortSignal) => {
    if (signal.aborted) throw signal.reason;
    this.naps.push(ms);
    // Let other promise chains run first (a cancel, a stop), as real time would.
    await new Promise((r) => setImmediate(r));
    if (signal.aborted) throw signal.reason;
    this.t += ms;
    this.mono += ms;
  };
}

/** The boot firmware: which slot booted, the committed slot, the [tryboot] slot, and every call. */
export class FakeBoot implements BootBackend {
  readonly name = 'fake';
  calls: string[] = [];
  tryboot: Slot;
  failNext: Partial<Record<'startTrial' | 'commit' | 'reboot' | 'clearTrial', Error>> = {};
  constructor(
    public booted: Slot = 'A',
    public committed: Slot = 'A',
    public trial = false,
  ) {
    this.tryboot = committed;
  }
  async bootedSlot() {
    return this.booted;
  }
  async isTrialBoot() {
    return this.trial;
  }
  async committedSlot() {
    return this.committed;
  }
  private fail(what: keyof FakeBoot['failNext']) {
    const err = this.failNext[what];
    if (err) {
      delete this.failNext[what];
      throw err;
    }
  }
  async startTrial(slot: Slot) {
    this.calls.push(`startTrial ${slot}`);
    this.fail('startTrial');
    this.tryboot = slot;
  }
  async clearTrial() {
    this.calls.push('clearTrial');
    this.fail('clearTrial');
    this.tryboot = this.committed;
  }
  async commit(slot: Slot) {
    this.calls.push(`commit ${slot}`);
    this.fail('commit');
    this.committed = slot;
    this.tryboot = slot;
  }
  async reboot() {
    this.calls.push('reboot');
    this.fail('reboot');
  }
}

/** Slot partitions in memory, of a fixed size each. */
export class MemoryStorage implements SlotStorage {
  readonly partitions = new Map<string, Buffer>();
  opened: string[] = [];
  openError: Error | null = null;
  readBackOverride: string | null = null;
  constructor(paths: string[], size = 1 << 20) {
    for (const p of paths) this.partitions.set(p, Buffer.alloc(size));
  }
  async partitionSize(path: string) {
    return this.get(path).length;
  }
  async openForWrite(path: string): Promise<SlotWriter> {
    if (this.openError) throw this.openError;
    const buf = this.get(path);
    this.opened.push(path);
    return {
      size: buf.length,
      write: async (offset, data) => {
        if (offset + data.length > buf.length) throw new Error(`write past the end of ${path}`);
        buf.set(data, offset);
      },
      sync: async () => undefined,
      close: async () => undefined,
    };
  }
  async hashFromMedium(path: string, length: number, signal?: AbortSignal) {
    signal?.throwIfAborted();
    if (this.readBackOverride) return this.readBackOverride;
    const { createHash } = await import('node:crypto');
    return createHash('sha256').update(this.get(path).subarray(0, length)).digest('hex');
  }
  private get(path: string): Buffer {
    const b = this.partitions.get(path);
    if (!b) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    return b;
  }
}

export function fakePorts(over: Partial<WorkflowPorts> & { boot: FakeBoot; clock: FakeClock }): WorkflowPorts & { floor: { value: number } } {
  const floor = { value: 0 };
  return {
    storage: new MemoryStorage([]),
    http: async () => {
      throw new Error('no HTTP in this test');
    },
    logger: silentLogger,
    securityFloor: {
      get current() {
        return floor.value;
      },
      raise: async (to: number) => {
        floor.value = Math.max(floor.value, to);
      },
    },
    progressChanged: () => undefined,
    flushReports: async () => true,
    hubReached: new Promise(() => undefined),
    applyWindowOpen: async () => undefined,
    shutdownUnderWay: async () => false,
    floor,
    ...over,
  };
}

export function updateIn(phase: Phase, over: Partial<UpdateRecord> = {}): UpdateRecord {
  return {
    updateId: 'u1', fwPackageUri: 'https://fw.example/1.piota', pinnedSha256: null, expectedVersion: null, applyNow: false, phase,
    fromSlot: 'A', targetSlot: 'B', bundle: null, nextChunk: 0, bytesDownloaded: 0, error: null,
    times: { startedWaitingTime: '2026-11-29T00:00:00.000Z', startedDownloadingTime: null, downloadCompleteTime: null, startedApplyingImage: null, lastFirmwareUpdate: null },
    trialStartedAt: null, entries: { [phase]: 1 },
    ...over,
  };
}

export function stateWith(update: UpdateRecord | null): DeviceState {
  return { slots: { A: { version: '1.0.0', sha256: 'a'.repeat(64), securityVersion: 0, installedAt: '2026-01-01T00:00:00Z' }, B: null }, update, newestTimestamp: 0, recovery: null };
}
