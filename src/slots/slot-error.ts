/** Why a slot partition cannot be used; `path` names it, the message says what to do about it. */
export type SlotErrorCode = 'notFound' | 'notPartition' | 'mounted' | 'busy' | 'tooLarge' | 'shortRead' | 'io';

export class SlotError extends Error {
  override name = 'SlotError';
  constructor(
    readonly code: SlotErrorCode,
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
  }
}
