import { parseCommandArgs, type Command } from './command.js';
import { DRIVE_HELP, DRIVE_OPTIONS, driveAndPrint } from './rollout-drive.js';
import { checkRolloutName, HUB_HELP, HUB_OPTIONS, openRolloutHub, withRolloutErrors } from './rollout-shared.js';

export const rolloutRunCommand: Command = {
  path: ['rollout', 'run'],
  help: `Usage: piota rollout run NAME [--hub-dir DIR | --connection-string CS] [--tier S1|S2|S3]
                         [--lease D] [--poll D] [--json]

Drives a rollout as its controller, from wherever it stands (the record in the hub says): starts
the next waves, applies the halt rule, sends the desired release to devices that were offline.
One controller at a time: if another holds the rollout's lease, run waits and takes the rollout
over once that lease expires (the other controller died). A paused rollout is waited on until
someone continues or aborts it. Ends when the rollout completes, halts or is aborted.

Options:
${HUB_HELP}
${DRIVE_HELP}

Exit codes: 0 completed; 1 halted; 2 usage or connection error; 3 aborted; 4 stopped driving
(Ctrl-C, or another controller took over); 5 no rollout of that name.`,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(this, argv, { ...HUB_OPTIONS, ...DRIVE_OPTIONS }, { min: 1, max: 1 });
    const cmd = 'piota rollout run';
    return withRolloutErrors(cmd, async () => {
      const name = checkRolloutName(positionals[0]);
      const access = await openRolloutHub(cmd, values, 0.5);
      await access.store.read(name); // not found: exit 5 before any waiting
      return driveAndPrint(access, name, values, false);
    });
  },
};
