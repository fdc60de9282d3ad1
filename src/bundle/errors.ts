/**
 * What went wrong with a bundle, as a program can act on it. The daemon reports the code in the
 * twin (`error.code`); `piota bundle verify` prints `error <code>: <message>`.
 */
export type BundleErrorCode =
  /** The bytes are not a well-formed bundle (bad magic, bad lengths, a manifest that breaks the schema). */
  | 'malformed'
  /** A bundle of a format version this piota does not know. */
  | 'unsupportedFormat'
  /** The bundle ended before the header or a chunk was complete. */
  | 'truncated'
  /** The bundle carries no signature at all (made by `bundle create` without --key, never signed). */
  | 'unsigned'
  /** No signature was made by a trusted key. */
  | 'untrustedKey'
  /** A signature by a trusted key does not hold: the signed header was altered. */
  | 'signatureInvalid'
  /** The device's model is not among the bundle's compatible models. */
  | 'incompatible'
  /** The bundle's security version is lower than the device's. */
  | 'downgrade'
  /** A chunk is larger than the device accepts (its config's maxChunkBytes). */
  | 'chunkTooLarge'
  /** A chunk's bytes do not match the hash the signed manifest gives for it. */
  | 'hashMismatch'
  /** A key file or key text that is not a usable ed25519 PEM key. */
  | 'badKey'
  /** A caller passed options that cannot make or read a bundle (names the option). */
  | 'invalidArgument'
  /** `bundle sign`: every signature slot of the bundle is taken. */
  | 'signatureSlotsFull';

export class BundleError extends Error {
  override name = 'BundleError';
  constructor(
    readonly code: BundleErrorCode,
    message: string,
  ) {
    super(message);
  }
}
