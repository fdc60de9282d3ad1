import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { pino } from 'pino';
import { emptyState, isTerminal, validateDeviceState, type DeviceState, type Phase } from '../../src/agent/device-state.js';
import type { MethodAnswer } from '../../src/agent/hub-link.js';
import { methodHandlers, type MethodDeps } from '../../src/agent/method-handlers.js';

/*
 * Property-based fuzzing of the direct-method handlers with generated payloads: whatever a caller
 * sends, `firmwareUpdate` and `firmwareUpdateCancel` never throw, answer 200, 400 or 409 with a JSON
 * object carrying a `message`, refuse without touching the state, and persist only what the daemon
 * can load again. Seeded like test/bundle/fuzz.test.ts (FUZZ_SEED replays a run).
 */
const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : 20261129;
if (!Number.isSafeInteger(SEED)) throw new Error(`FUZZ_SEED must be a whole number, got ${JSON.stringify(process.env.FUZZ_SEED)}`);

const PHASES: Phase[] = ['waiting', 'downloading', 'downloadComplete', 'verifying', 'rebooting', 'trial', 'committing', 'rollingBack', 'applyComplete', 'applyFailed', 'downloadFailed'];
/** The fake runner's rule, the workflow's: cancel is taken before applying starts. */
const CANCELLABLE: Phase[] = ['waiting', 'downloading', 'downloadComplete'];

const silent = pino({ level: 'silent' });

/**
 * The handlers over fakes of their deps, all here so a change of MethodDeps is adapted in one place.
 * The fake runner ends a cancellable update as the workflow does (downloadFailed, `cancelled`).
 */
function fakeDevice() {
  const state: DeviceState = emptyState();
  const calls = { starts: 0, cancels: 0, saves: 0 };
  const deps: MethodDeps = {
    state,
    bootedSlot: 'A',
    async save(next?: DeviceState) {
      calls.saves++;
      // What is persisted must load again: through JSON, as the state file does.
      validateDeviceState(JSON.parse(JSON.stringify(next ?? state)));
    },
    statusChanged() {},
    async flushReports() {
      return true;
    },
    runner: {
      start() {
        calls.starts++;
      },
      async cancel() {
        calls.cancels++;
        const u = state.update;
        if (!u || !CANCELLABLE.includes(u.phase)) return false;
        state.update = { ...u, phase: 'downloadFailed', error: { code: 'cancelled', message: 'cancelled by firmwareUpdateCancel before applying started' } };
        return true;
      },
    } as unknown as MethodDeps['runner'],
    logger: silent,
    ackTimeoutMs: 10,
  };
  const handlers = methodHandlers(deps);
  return {
    state,
    calls,
    update: (payload: unknown) => handlers.firmwareUpdate(payload),
    // The hub hands every method its payload; the cancel handler is free to ignore it.
    cancel: (payload: unknown) => (handlers.firmwareUpdateCancel as (p: unknown) => Promise<MethodAnswer>)(payload),
    /** Moves the update on, as the runner would between two calls. */
    advance(phase: Phase) {
      if (state.update) state.update = { ...state.update, phase };
    },
  };
}

type Device = ReturnType<typeof fakeDevice>;

/**
 * Fails the property with `message` (plain throws: at 10,000 runs vitest's expect costs more than
 * the handler; fast-check then prints the payload that did it).
 */
function check(ok: boolean, message: () => string): void {
  if (!ok) throw new Error(message());
}

/** Only what JSON carries: null, booleans, finite numbers, strings, arrays and plain objects of those. */
function isJson(v: unknown): boolean {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return true;
  if (typeof v === 'number') return Number.isFinite(v);
  if (Array.isArray(v)) return v.every(isJson);
  return typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype && Object.values(v as object).every(isJson);
}

const show = (v: unknown) => JSON.stringify(v)?.slice(0, 300);

/** What every answer must be, whatever was asked. */
function checkAnswer(answer: MethodAnswer): void {
  check([200, 400, 409].includes(answer.status), () => `status ${answer.status}: ${show(answer)}`);
  const body = answer.payload as Record<string, unknown>;
  check(body !== null && typeof body === 'object' && !Array.isArray(body) && isJson(body), () => `not a JSON object body: ${show(answer)}`);
  check(typeof body.message === 'string' && body.message.length > 0, () => `no message: ${show(answer)}`);
  // The hub caps a method answer at 128 KiB; nothing a caller sends may make ours grow past a few.
  check(JSON.stringify(body).length < 8192, () => `an answer of ${JSON.stringify(body).length} characters: ${show(answer)}`);
}

const snapshot = (d: Device) => JSON.stringify(d.state);
const busy = (d: Device) => d.state.update !== null && !isTerminal(d.state.update.phase);

/** firmwareUpdate, checked against what the state was before. */
async function update(d: Device, payload: unknown): Promise<MethodAnswer> {
  const before = snapshot(d);
  const wasBusy = busy(d);
  const previous = d.state.update;
  const calls = JSON.stringify(d.calls);
  const answer = await d.update(payload);
  checkAnswer(answer);
  const body = answer.payload as Record<string, unknown>;
  const unchanged = () => snapshot(d) === before && JSON.stringify(d.calls) === calls;
  if (answer.status !== 200 || wasBusy) check(unchanged(), () => `${answer.status} but the state changed or the runner was called: ${show(answer)}`);
  if (answer.status === 400) check(body.updateId === undefined, () => `400 with an updateId: ${show(answer)}`);
  if (answer.status === 409) check(wasBusy, () => `409 while idle: ${show(answer)}`);
  if (answer.status === 200 && wasBusy) check(body.updateId === previous!.updateId, () => `200 while busy with another updateId: ${show(answer)}`);
  if (answer.status === 200 && !wasBusy) {
    const u = d.state.update;
    check(u !== null && u.updateId === body.updateId && u.phase === 'waiting' && u.fromSlot === 'A' && u.targetSlot === 'B', () => `accepted, but the state holds ${show(u)}`);
    const c = JSON.parse(calls) as Device['calls'];
    check(d.calls.saves === c.saves + 1 && d.calls.starts === c.starts + 1, () => `accepted with ${show(d.calls)} after ${calls}`);
  }
  return answer;
}

async function cancel(d: Device, payload: unknown): Promise<MethodAnswer> {
  const before = snapshot(d);
  const wasBusy = busy(d);
  const answer = await d.cancel(payload);
  checkAnswer(answer);
  if (!wasBusy) check(answer.status === 200 && (answer.payload as { message: string }).message === 'nothing to cancel', () => `idle cancel answered ${show(answer)}`);
  if (answer.status === 409) check(snapshot(d) === before, () => `409 but the state changed: ${show(answer)}`);
  if (wasBusy && answer.status === 200) check(d.state.update!.phase === 'downloadFailed', () => `cancelled, but the update is ${d.state.update!.phase}`);
  return answer;
}

// --- what callers send -------------------------------------------------------------------------

const hex64 = fc.stringMatching(/^[0-9a-fA-F]{64}$/);
const odd = fc.constantFrom('\u0000', '\n', '\r\n', ' ', '\t', '%00', '%0a', '\u202e', '\ufeff', '\ud800', '😀', 'é', '..', '/', '\\', '#', '?', '@', ':', '[', ']');
const oddText = fc.array(fc.oneof(odd, fc.string({ maxLength: 8 })), { maxLength: 6 }).map((parts) => parts.join(''));
const scheme = fc.constantFrom('https', 'HTTPS', 'hTTps', 'http', 'file', 'ftp', 'javascript', 'data', 'ws', 'wss', 'blob', 'about', 'mailto', 'urn', 'https+x', '', ' https');
const host = fc.oneof(fc.domain(), fc.constantFrom('localhost', '[::1]', '127.0.0.1', '256.256.256.256', 'localhost:99999', 'h:0', 'xn--nxasmq6b', '', '%00'));
const uri = fc.oneof(
  fc.webUrl({ validSchemes: ['https'], withQueryParameters: true, withFragments: true }),
  fc.tuple(scheme, fc.constantFrom('://', ':', ':/', ':///', '://user:pw@', '://u@'), host, fc.oneof(fc.webPath(), oddText), fc.oneof(fc.constant(''), oddText.map((t) => `?${t}`)))
    .map(([s, sep, h, p, q]) => `${s}${sep}${h}${p}${q}`),
  fc.tuple(oddText, fc.webUrl({ validSchemes: ['https'] }), oddText).map(([a, u, b]) => `${a}${u}${b}`),
);
/** Long strings without generating each character: just under and over the URI limit, and far over. */
function longText(sizes: fc.Arbitrary<number>) {
  return fc.tuple(fc.constantFrom('https://h/', '', 'x'), sizes, fc.constantFrom('a', '\u0000', '/', '😀'))
    .map(([head, n, c]) => head + c.repeat(n));
}
const nearLimit = fc.integer({ min: 2030, max: 2060 });
const long = longText(fc.oneof({ arbitrary: nearLimit, weight: 9 }, { arbitrary: fc.constant(20_000), weight: 1 }));
const huge = longText(fc.oneof({ arbitrary: nearLimit, weight: 6 }, { arbitrary: fc.constant(100_000), weight: 3 }, { arbitrary: fc.constant(1_000_000), weight: 1 }));
const version = fc.oneof(fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._+~-]{0,70}$/), oddText, long);
const anyJson = fc.jsonValue({ maxDepth: 2 });
const value = fc.oneof(anyJson, oddText, long, uri, fc.double(), fc.bigInt().map(String), fc.constantFrom(Number.MAX_VALUE, -0, 1e-300));
/** JSON objects nested deeper than JSON.stringify can follow, parsed from their text as the SDK would (once: they are big). */
const nested = (n: number) => JSON.parse(`${'{"fwPackageUri":'.repeat(n)}"https://h/f"${'}'.repeat(n)}`) as unknown;
const deep = fc.constantFrom(nested(1), nested(2), nested(30), nested(10_000));
const goodUri = fc.webUrl({ validSchemes: ['https'], withQueryParameters: true, withFragments: true });
/** The documented shape, each field present or not, with random values beside good ones. */
const shaped = fc.record(
  {
    fwPackageUri: fc.oneof({ arbitrary: uri, weight: 4 }, value),
    sha256: fc.oneof(hex64, value, fc.constant(null)),
    version: fc.oneof(version, value, fc.constant(null)),
    applyWindow: fc.oneof(fc.constantFrom('now', 'NOW', 'later', ''), value, fc.constant(null)),
    extra: value,
  },
  { requiredKeys: [] },
);
const good = fc.record(
  { fwPackageUri: goodUri, sha256: hex64, version: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}$/), applyWindow: fc.constant('now') },
  { requiredKeys: ['fwPackageUri'] },
);
/** What arrives: the hub delivers JSON, so every payload goes through a JSON round trip (as the SDK parses it). */
const payload = fc.oneof(
  {
    arbitrary: fc
      .oneof(
        { arbitrary: shaped, weight: 6 },
        { arbitrary: good, weight: 2 },
        { arbitrary: uri, weight: 2 },
        { arbitrary: value, weight: 2 },
        { arbitrary: huge, weight: 1 },
        { arbitrary: fc.array(fc.oneof(uri, value), { maxLength: 4 }), weight: 1 },
        { arbitrary: fc.dictionary(fc.oneof(fc.string(), fc.constantFrom('__proto__', 'constructor', 'fwPackageUri', 'toString')), value), weight: 1 },
        { arbitrary: fc.constantFrom(null, undefined, '', 0, true, [], {}), weight: 1 },
      )
      // A string survives the round trip as it is (lone surrogates too); skipping it spares megabytes of escaping.
      .map((p) => (p === undefined || typeof p === 'string' ? p : (JSON.parse(JSON.stringify(p)) as unknown))),
    weight: 16,
  },
  { arbitrary: fc.record({ fwPackageUri: huge }), weight: 1 },
  { arbitrary: deep, weight: 1 },
);

/** A device idle, or with an update of ours in any phase (reached the real way: accepted, then moved on). */
const start = fc.option(fc.tuple(uri.filter((u) => /^https:\/\//.test(u)), fc.constantFrom(...PHASES)), { nil: null });

async function deviceAt(at: [string, Phase] | null): Promise<Device> {
  const d = fakeDevice();
  if (at) {
    const answer = await d.update({ fwPackageUri: at[0] });
    if (answer.status === 200) d.advance(at[1]);
  }
  return d;
}

// --- the properties ------------------------------------------------------------------------------

describe('method payloads, fuzzed at the handlers', () => {
  it('10,000 single calls: never a throw, always 200/400/409 with a message, refusals change nothing', async () => {
    console.log(`method payload fuzz: seed ${SEED} (replay with FUZZ_SEED=${SEED})`);
    const statuses: Record<string, number> = {};
    await fc.assert(
      fc.asyncProperty(start, payload, fc.boolean(), async (at, p, toCancel) => {
        const d = await deviceAt(at);
        const answer = toCancel ? await cancel(d, p) : await update(d, p);
        const key = `${toCancel ? 'cancel' : 'update'} ${answer.status}`;
        statuses[key] = (statuses[key] ?? 0) + 1;
      }),
      { seed: SEED, numRuns: 10_000 },
    );
    console.log(`method payload fuzz answers: ${JSON.stringify(statuses)}`);
    // Every answer was reached, not only refusals.
    for (const key of ['update 200', 'update 400', 'update 409', 'cancel 200', 'cancel 409']) expect(statuses[key] ?? 0, key).toBeGreaterThan(50);
  }, 60_000);

  type Step = { call: 'update' | 'cancel'; payload: unknown } | { call: 'advance'; phase: Phase } | { call: 'together'; payloads: [unknown, unknown] };
  const validUpdate = fc.record({ call: fc.constant('update' as const), payload: fc.oneof(fc.constant({ fwPackageUri: 'https://fw.example/a.piota' }), shaped.map((s) => ({ ...s, fwPackageUri: 'https://fw.example/b.piota' }))) });
  const step: fc.Arbitrary<Step> = fc.oneof(
    { arbitrary: fc.record({ call: fc.constant('update' as const), payload }), weight: 3 },
    { arbitrary: validUpdate, weight: 3 },
    { arbitrary: fc.record({ call: fc.constant('cancel' as const), payload }), weight: 2 },
    { arbitrary: fc.record({ call: fc.constant('advance' as const), phase: fc.constantFrom(...PHASES) }), weight: 2 },
    { arbitrary: fc.record({ call: fc.constant('together' as const), payloads: fc.tuple(payload, payload) }), weight: 1 },
  );

  async function play(steps: Step[]): Promise<number[]> {
    const d = fakeDevice();
    const answers: number[] = [];
    for (const s of steps) {
      if (s.call === 'advance') d.advance(s.phase);
      else if (s.call === 'update') answers.push((await update(d, s.payload)).status);
      else if (s.call === 'cancel') answers.push((await cancel(d, s.payload)).status);
      else if (s.call === 'together') {
        // Two callers at once (an update and a cancel): only the answers' shape is promised.
        const both = await Promise.all([d.update(s.payloads[0]), d.cancel(s.payloads[1])]);
        both.forEach(checkAnswer);
        answers.push(...both.map((a) => a.status));
      }
    }
    return answers;
  }

  it('update, the same again, another, cancel, a bad version, update: the answers the docs give', async () => {
    const a = { fwPackageUri: 'https://fw.example/a.piota' };
    expect(await play([
      { call: 'update', payload: a },
      { call: 'update', payload: a },
      { call: 'update', payload: { fwPackageUri: 'https://fw.example/other.piota' } },
      { call: 'cancel', payload: null },
      { call: 'update', payload: { ...a, version: '1.0\u0000' } },
      { call: 'update', payload: a },
      { call: 'advance', phase: 'trial' },
      { call: 'cancel', payload: {} },
    ])).toEqual([200, 200, 409, 200, 400, 200, 409]);
  });

  it('1,000 generated sequences (updates, cancels, the update moving on, calls at once) keep every answer well-formed', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 2, maxLength: 8 }), async (steps) => {
        await play(steps);
      }),
      { seed: SEED, numRuns: 1_000 },
    );
  }, 60_000);
});
