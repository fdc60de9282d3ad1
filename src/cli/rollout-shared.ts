import { RolloutError } from '../rollout/errors.js';
import { HubCallError, type RolloutHub } from '../rollout/hub-port.js';
import { iothubRolloutHub } from '../rollout/iothub-port.js';
import { createPacer, type Pacer } from '../rollout/pacer.js';
import { RecordStore } from '../rollout/record-store.js';
import type { RolloutState } from '../rollout/record.js';
import { parseTier, type Tier } from '../rollout/tier-limits.js';
import { CommandError, UsageError } from './command.js';
import { hubTarget } from './hub-target.js';

/** Exit codes of every `piota rollout` command (docs/rollouts.md, "Exit codes"). */
export const ROLLOUT_EXIT = { completed: 0, halted: 1, usage: 2, aborted: 3, paused: 4, notFound: 5, badState: 6 } as const;

export function exitForState(state: RolloutState): number {
  return state === 'completed' ? ROLLOUT_EXIT.completed : state === 'halted' ? ROLLOUT_EXIT.halted : state === 'aborted' ? ROLLOUT_EXIT.aborted : state === 'paused' ? ROLLOUT_EXIT.paused : ROLLOUT_EXIT.completed;
}

/** The options every rollout command takes to reach the hub. */
export const HUB_OPTIONS = {
  'hub-dir': { type: 'string' },
  'connection-string': { type: 'string' },
  ca: { type: 'string' },
  tier: { type: 'string' },
} as const;

export const HUB_HELP = `  --hub-dir DIR             the hub emulator's directory (reads DIR/hub.json)
  --connection-string CS    a hub's service connection string (default $IOTHUB_CONNECTION_STRING)
  --ca FILE                 an extra CA to trust for the hub (with --connection-string)
  --tier S1|S2|S3           the hub's tier: calls are paced below its throttles (default S1)`;

export interface RolloutHubAccess {
  hub: RolloutHub;
  store: RecordStore;
  pacer: Pacer;
  tier: Tier;
}

/** Connects to the hub named by the options, with calls paced for the tier at `share` of its limits. */
export async function openRolloutHub(command: string, values: { 'hub-dir'?: string; 'connection-string'?: string; ca?: string; tier?: string }, share: number): Promise<RolloutHubAccess> {
  let tier: Tier;
  try {
    tier = parseTier(values.tier ?? 'S1');
  } catch (err) {
    throw new UsageError(`${command}: ${(err as Error).message}`);
  }
  const target = await hubTarget(command, values['hub-dir'], values['connection-string'], values.ca);
  const pacer = createPacer({ tier, share });
  let hub: RolloutHub;
  try {
    hub = iothubRolloutHub(target, pacer);
  } catch (err) {
    throw new CommandError(`${command}: ${(err as Error).message}`, ROLLOUT_EXIT.usage);
  }
  return { hub, store: new RecordStore(hub), pacer, tier };
}

/** Runs a rollout command body, turning the rollout's and the hub's errors into exit codes. */
export async function withRolloutErrors(command: string, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (err) {
    if (err instanceof RolloutError) {
      const code = err.code === 'badOption' ? ROLLOUT_EXIT.usage : err.code === 'notFound' || err.code === 'exists' ? ROLLOUT_EXIT.notFound : err.code === 'badState' ? ROLLOUT_EXIT.badState : 1;
      throw new CommandError(`${command}: ${err.message}`, code);
    }
    if (err instanceof HubCallError) throw new CommandError(`${command}: ${err.message}`, ROLLOUT_EXIT.usage);
    throw err;
  }
}

/** A rollout name from the positional argument, checked. */
export { checkRolloutName } from '../rollout/definition.js';
