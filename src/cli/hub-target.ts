import { readHubInfo } from '../hub-emulator/index.js';
import type { HubTarget } from '../service/hub-connection.js';
import { CommandError, UsageError } from './command.js';

/** The exit code of a hub that cannot be named or read: a usage error for trigger and rollout alike. */
const USAGE_EXIT = 2;

/**
 * The hub a service command talks to: the emulator's hub.json in --hub-dir, or --connection-string
 * (else IOTHUB_CONNECTION_STRING) with an optional --ca. `command` prefixes the messages.
 */
export async function hubTarget(command: string, hubDir: string | undefined, connectionString: string | undefined, ca: string | undefined): Promise<HubTarget> {
  if (hubDir && connectionString) throw new UsageError(`${command}: give --hub-dir or --connection-string, not both`);
  if (hubDir) {
    const info = await readHubInfo(hubDir).catch((err: Error) => {
      throw new CommandError(err.message, USAGE_EXIT);
    });
    if (!info) throw new CommandError(`no hub.json in ${hubDir}: start the emulator with piota hub start --dir ${hubDir}`, USAGE_EXIT);
    return info;
  }
  const cs = connectionString ?? process.env.IOTHUB_CONNECTION_STRING;
  if (!cs) throw new UsageError(`${command}: give --hub-dir DIR, --connection-string CS or set IOTHUB_CONNECTION_STRING`);
  return { connectionString: cs, caFile: ca };
}
