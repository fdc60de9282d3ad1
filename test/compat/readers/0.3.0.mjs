// The state-reading rules of piota 0.3.0, frozen: a copy of what src/agent/device-state.ts and
// src/agent/state-store.ts do in that version, in plain JavaScript. Later versions keep this file
// unchanged: test/compat/state-compat.test.ts reads their state fixtures with it, which is how an
// older agent (booted again after a newer release's failed trial) meets a newer file.
// (While 0.3.0 is the current version, the same test checks that this copy agrees with the source.)

export const version = '0.3.0';

export const PHASES = [
  'waiting', 'downloading', 'downloadComplete', 'verifying', 'rebooting', 'checkingBoot', 'trial',
  'committing', 'rollingBack', 'applyComplete', 'applyFailed', 'downloadFailed',
];

/** Returns the state as 0.3.0 would use it, or throws Error (0.3.0 then moves the file aside and rebuilds). */
export function readState(text) {
  const env = JSON.parse(text);
  if (typeof env !== 'object' || env === null || typeof env.schema !== 'number' || !('data' in env)) throw new Error('malformed');
  if (!Number.isInteger(env.schema) || env.schema < 1) throw new Error('malformed schema');
  const d = env.data;
  object(d, 'the state');
  object(d.slots, 'slots');
  for (const s of ['A', 'B']) {
    const r = d.slots[s];
    if (r === null) continue;
    object(r, `slots.${s}`);
    if (typeof r.version !== 'string' || typeof r.sha256 !== 'string' || typeof r.securityVersion !== 'number') throw new Error(`slots.${s}`);
  }
  if (typeof d.newestTimestamp !== 'number' || !Number.isFinite(d.newestTimestamp)) throw new Error('newestTimestamp');
  if (d.update === null || d.update === undefined) {
    d.update = null;
    return d;
  }
  const u = object(d.update, 'update');
  if (typeof u.updateId !== 'string' || typeof u.fwPackageUri !== 'string') throw new Error('update ids');
  if (!['A', 'B'].includes(u.fromSlot) || !['A', 'B'].includes(u.targetSlot) || u.fromSlot === u.targetSlot) throw new Error('update slots');
  if (!Number.isInteger(u.nextChunk) || u.nextChunk < 0) throw new Error('update.nextChunk');
  if (typeof u.bytesDownloaded !== 'number') throw new Error('update.bytesDownloaded');
  if (typeof object(u.times, 'update.times').startedWaitingTime !== 'string') throw new Error('update.times.startedWaitingTime');
  object(u.entries, 'update.entries');
  if (u.error !== null && u.error !== undefined) {
    if (typeof u.error.code !== 'string' || typeof u.error.message !== 'string') throw new Error('update.error');
  } else u.error = null;
  if (!PHASES.includes(u.phase)) {
    const unknown = JSON.stringify(u.phase);
    const ended = (phase, keepError) => {
      u.phase = phase;
      if (!keepError || u.error === null) u.error = { code: 'unknownPhase', message: `the update was left in phase ${unknown} by a newer piota; ended as ${phase}` };
    };
    if (['applyComplete', 'applyFailed', 'downloadFailed'].includes(u.status)) ended(u.status, true);
    else if (['waiting', 'downloading', 'downloadComplete'].includes(u.status)) ended('downloadFailed', false);
    else u.phase = 'checkingBoot';
  }
  return d;
}

function object(v, field) {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${field}: expected an object`);
  return v;
}
