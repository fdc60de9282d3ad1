import { ConfigError, loadConfig } from '../agent/config.js';
import { DROPPED_CONNECTION_STRING, ProvisionError, provisionDroppedConnectionString } from '../provision/connection-string-drop.js';
import { CommandError, parseCommandArgs, type Command } from './command.js';
import { configPath, DEFAULT_CONFIG } from './config-path.js';

const DEFAULT_DROPPED = `/boot/bootconfig/${DROPPED_CONNECTION_STRING}`;

const help = `Usage: piota provision [--from FILE] [--config FILE] [--state-dir DIR]

First-boot provisioning (run by piota-provision.service before piota.service): moves the
device's connection string, dropped by the user on the FAT bootconfig partition after
flashing, to <stateDir>/connection-string (0600, written durably), then deletes it from
the FAT partition and syncs it. A file that is not a usable device connection string is
left where it is, nothing is written, and the command exits 2 with the reason (never the key).

Options:
  --from FILE       the dropped file (default ${DEFAULT_DROPPED})
  --config FILE     the daemon config whose stateDir receives it (default: $PIOTA_CONFIG, else ${DEFAULT_CONFIG})
  --state-dir DIR   the state directory, instead of the config's stateDir

Prints one line: "provisioned device ID: FILE -> TARGET" (written, replaced or unchanged),
or "nothing to provision: FILE does not exist" (exit 0).
Exit codes: 0 done or nothing to do; 2 the file or the config is unusable; 1 any other failure.`;

export const provisionCommand: Command = {
  path: ['provision'],
  help,
  async run(argv) {
    const { values } = parseCommandArgs(this, argv, {
      from: { type: 'string' },
      config: { type: 'string' },
      'state-dir': { type: 'string' },
    });
    const from = values.from ?? DEFAULT_DROPPED;
    let stateDir = values['state-dir'];
    if (stateDir === undefined) {
      try {
        stateDir = (await loadConfig(configPath(values.config))).stateDir;
      } catch (err) {
        if (err instanceof ConfigError) throw new CommandError(err.message, 2);
        throw err;
      }
    }
    let result;
    try {
      result = await provisionDroppedConnectionString(from, stateDir);
    } catch (err) {
      if (err instanceof ProvisionError) throw new CommandError(err.message, 2);
      throw new CommandError(`provisioning from ${from} failed: ${(err as Error).message}`);
    }
    if (result.outcome === 'nothing') process.stdout.write(`nothing to provision: ${from} does not exist\n`);
    else process.stdout.write(`provisioned device ${result.deviceId} (${result.outcome}): ${from} -> ${result.target}; ${from} deleted\n`);
    return 0;
  },
};
