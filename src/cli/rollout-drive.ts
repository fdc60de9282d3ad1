import { driveRollout } from '../rollout/controller.js';
import { formatDuration, parseDuration } from '../rollout/definition.js';
import { controllerIdentity } from '../rollout/record-store.js';
import { renderStatus } from '../rollout/status-printer.js';
import type { RolloutStatus } from '../rollout/status.js';
import { exitForState, ROLLOUT_EXIT, type RolloutHubAccess } from './rollout-shared.js';

/** Options of the commands that drive a rollout (start, run). */
export const DRIVE_OPTIONS = {
  lease: { type: 'string' },
  poll: { type: 'string' },
  json: { type: 'boolean' },
} as const;

export const DRIVE_HELP = `  --lease DURATION          how long this controller's lease lasts unrenewed; another run takes over
                            a rollout whose lease expired (default 60s)
  --poll DURATION           pause between two looks at the hub (default 2s; the tier's query quota
                            may make looks rarer)
  --json                    one status object per look, one per line (docs/rollouts.md)`;

/**
 * Drives a rollout as its controller and prints as it goes: a live picture on a terminal, the
 * decisions as lines otherwise (or a JSON status per look). Resolves to the exit code of the state
 * it ended in. Ctrl-C stops driving (the rollout goes on when another run takes it).
 */
export async function driveAndPrint(access: RolloutHubAccess, name: string, values: { lease?: string; poll?: string; json?: boolean }, stopWhenPaused: boolean): Promise<number> {
  const leaseMs = parseDuration(values.lease ?? '60s', '--lease', 5000, 3_600_000);
  const pollMs = parseDuration(values.poll ?? '2s', '--poll', 100, 600_000);
  const tty = !values.json && process.stdout.isTTY === true;
  const out = (t: string) => process.stdout.write(t);
  let printedDecisions = 0;
  let lastLines = 0;
  const controller = new AbortController();
  const onSignal = () => controller.abort(new Error('interrupted'));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const onStatus = (s: RolloutStatus) => {
    if (values.json) return out(JSON.stringify(s) + '\n');
    if (tty) {
      const text = renderStatus(s, { maxListed: 8 });
      out((lastLines ? `\x1b[${lastLines}A\x1b[J` : '') + text);
      lastLines = text.split('\n').length - 1;
      return;
    }
    for (const d of s.decisions.slice(printedDecisions)) out(`${d.at} ${d.what}: ${d.why}\n`);
    // The record keeps the last decisions only: count from where it stands now.
    printedDecisions = s.decisions.length;
  };
  try {
    const end = await driveRollout({
      hub: access.hub,
      store: access.store,
      name,
      owner: controllerIdentity(),
      leaseMs,
      pollMs,
      stopWhenPaused,
      onStatus,
      onNote: (line) => (values.json ? process.stderr.write(line + '\n') : (lastLines = 0, out(line + '\n'))),
      signal: controller.signal,
    });
    const r = end.record;
    if (!values.json) {
      const how = end.end === 'stopped' ? 'stopped driving' : 'ended';
      out(`rollout ${name} ${r.state}${r.reason ? `: ${r.reason}` : ''} (${how}; lease ${formatDuration(leaseMs)})\n`);
    }
    if (end.end === 'stopped' && r.state === 'running') return ROLLOUT_EXIT.paused;
    return exitForState(r.state);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
