/**
 * Why an update failed, as it appears on the twin (`error: {code, message}`): the code for programs,
 * the message for the person reading it.
 */
export class UpdateFailure extends Error {
  override name = 'UpdateFailure';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}
