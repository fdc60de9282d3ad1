import { cleanUp } from '../rollout/clean-up.js';
import { EvidenceReader } from '../rollout/evidence.js';
import { logDecision, applyEvent, type RolloutEvent } from '../rollout/state-machine.js';
import { parseCommandArgs, type Command } from './command.js';
import { checkRolloutName, HUB_HELP, HUB_OPTIONS, openRolloutHub, ROLLOUT_EXIT, withRolloutErrors } from './rollout-shared.js';
import { userInfo, hostname } from 'node:os';

type Action = 'pause' | 'continue' | 'abort';

const WHAT: Record<Action, string> = {
  pause: 'Pauses a rollout: no further wave starts (the devices of a wave already started go on, and the\nhalt rule still applies to them). The controller sees it at its next look.',
  continue: 'Continues a paused rollout: its controller starts the next wave when the current one ends.\nA halted, completed or aborted rollout cannot continue (start a new one).',
  abort: 'Aborts a rollout: no further wave starts, its jobs still active are cancelled, devices still\nwaiting or downloading get firmwareUpdateCancel, and devices that were offline lose the desired\nrelease they have not acted on yet. Done by this command, whether a controller runs or not.',
};

function controlCommand(action: Action): Command {
  return {
    path: ['rollout', action],
    help: `Usage: piota rollout ${action} NAME [--hub-dir DIR | --connection-string CS] [--tier S1|S2|S3]

${WHAT[action]}

Options:
${HUB_HELP}

Exit codes: 0 done; 2 usage or connection error; 5 no rollout of that name; 6 the rollout's state
does not allow it (its state and reason are printed).`,
    async run(argv) {
      const { values, positionals } = parseCommandArgs(this, argv, HUB_OPTIONS, { min: 1, max: 1 });
      const cmd = `piota rollout ${action}`;
      return withRolloutErrors(cmd, async () => {
        const name = checkRolloutName(positionals[0]);
        const access = await openRolloutHub(cmd, values, 0.25);
        const by = `${userInfo().username}@${hostname()}`;
        const event = { type: action, by } as RolloutEvent;
        const stored = await access.store.update(name, (r) => applyEvent(r, event, new Date()));
        process.stdout.write(`rollout ${name}: ${stored.record.state}${stored.record.reason ? ` (${stored.record.reason})` : ''}\n`);
        if (action === 'abort') {
          const { twins, outcomes } = await new EvidenceReader(access.hub).read(stored.record);
          const report = await cleanUp(access.hub, stored.record, outcomes, twins);
          const summary = `${report.jobsCancelled.length} job(s) cancelled, firmwareUpdateCancel sent to ${report.cancelSent.length} device(s), desired release removed from ${report.desiredCleared.length}`;
          await access.store.update(name, (r) => logDecision({ ...r, cleanedUp: true }, 'clean-up after aborted', summary, new Date()));
          process.stdout.write(`${summary}\n`);
          for (const p of report.problems) process.stdout.write(`  ${p}\n`);
        }
        return ROLLOUT_EXIT.completed;
      });
    },
  };
}

export const rolloutPauseCommand = controlCommand('pause');
export const rolloutContinueCommand = controlCommand('continue');
export const rolloutAbortCommand = controlCommand('abort');
