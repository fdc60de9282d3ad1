/**
 * Why an image command stopped. `code` says which exit it maps to: a problem with the input or the
 * flags the user can fix (refused), the host lacking root or a tool (host), a tool that failed on
 * the way (failed).
 */
export type ImageErrorCode = 'refused' | 'host' | 'failed';

export class ImageError extends Error {
  override name = 'ImageError';
  constructor(
    readonly code: ImageErrorCode,
    message: string,
  ) {
    super(message);
  }
}
