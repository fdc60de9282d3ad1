import { EvidenceReader } from '../rollout/evidence.js';
import { HubCallError } from '../rollout/hub-port.js';
import { parseDuration } from '../rollout/definition.js';
import { isFinal } from '../rollout/state-machine.js';
import { renderStatus } from '../rollout/status-printer.js';
import { rolloutStatus } from '../rollout/status.js';
import { TIER_LIMITS } from '../rollout/tier-limits.js';
import { parseCommandArgs, type Command } from './command.js';
import { checkRolloutName, HUB_HELP, HUB_OPTIONS, openRolloutHub, ROLLOUT_EXIT, withRolloutErrors } from './rollout-shared.js';

/** status --watch uses a quarter of the tier's query quota; the controller has half. */
const WATCH_SHARE = 0.25;

export const rolloutStatusCommand: Command = {
  path: ['rollout', 'status'],
  help: `Usage: piota rollout status NAME [--json] [--watch [--interval D]]
                            [--hub-dir DIR | --connection-string CS] [--tier S1|S2|S3]

The rollout per wave and overall: devices, pending/waiting/downloading/applying/applyComplete/
applyFailed/downloadFailed/refused/offline, the failure rate against the halt rule, the failed
devices with their error codes, the offline ones, and why the rollout stopped if it did. Read
from the hub (the record and the devices' twins), so any workstation sees the same.

Options:
  --json                    one JSON object (docs/rollouts.md, "status --json"); with --watch, one per line
  --watch                   keep showing it (redrawn on a terminal) until the rollout ends
  --interval D              between two looks with --watch (default 5s; never faster than a quarter of
                            the tier's query quota allows)
${HUB_HELP}

Exit codes: 0 shown; 2 usage or connection error; 5 no rollout of that name.`,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(this, argv, { ...HUB_OPTIONS, json: { type: 'boolean' }, watch: { type: 'boolean' }, interval: { type: 'string' } }, { min: 1, max: 1 });
    const cmd = 'piota rollout status';
    return withRolloutErrors(cmd, async () => {
      const name = checkRolloutName(positionals[0]);
      const intervalMs = parseDuration(values.interval ?? '5s', '--interval', 500, 3_600_000);
      const access = await openRolloutHub(cmd, values, WATCH_SHARE);
      const reader = new EvidenceReader(access.hub);
      const tty = !values.json && process.stdout.isTTY === true;
      let lastLines = 0;
      for (;;) {
        let record;
        let outcomes;
        try {
          ({ record } = await access.store.read(name));
          ({ outcomes } = await reader.read(record));
        } catch (err) {
          // A watch outlives a blink of the hub; a single look reports it (exit 2).
          if (!values.watch || !(err instanceof HubCallError) || (err.kind !== 'unreachable' && err.kind !== 'throttled')) throw err;
          process.stderr.write(`cannot read the rollout now (${err.message}); trying again\n`);
          await new Promise((r) => setTimeout(r, intervalMs));
          continue;
        }
        const status = rolloutStatus(record, outcomes, Date.now());
        if (values.json) process.stdout.write(JSON.stringify(status, null, values.watch ? undefined : 2) + '\n');
        else {
          const text = renderStatus(status);
          process.stdout.write((tty && lastLines ? `\x1b[${lastLines}A\x1b[J` : '') + text);
          lastLines = text.split('\n').length - 1;
        }
        if (!values.watch || isFinal(record.state)) return ROLLOUT_EXIT.completed;
        // Each look costs one query page per 100 devices (plus jobs still reporting): space the
        // looks so they stay within this command's share of the query quota.
        const pages = Math.max(1, Math.ceil(outcomes.length / 100));
        const floorMs = (pages / (TIER_LIMITS[access.tier].perSecond.query * WATCH_SHARE)) * 1000;
        await new Promise((r) => setTimeout(r, Math.max(intervalMs, floorMs)));
      }
    });
  },
};
