/**
 * A rollout refused or stopped for a reason a person can act on: `code` for programs, a message
 * that names the option, rollout or device.
 */
export type RolloutErrorCode =
  | 'badOption' // a knob the definition cannot take (waves, rates, durations, names)
  | 'notFound' // no rollout of that name
  | 'exists' // start with a name already used
  | 'badState' // pause/continue/abort from a state that does not allow it
  | 'conflict' // another writer changed the record first, too many times in a row
  | 'badRecord'; // a record this version cannot read

export class RolloutError extends Error {
  override name = 'RolloutError';
  constructor(
    readonly code: RolloutErrorCode,
    message: string,
  ) {
    super(message);
  }
}
