import { BundleError } from '../../bundle/errors.js';
import { BootError } from '../../boot/backend.js';
import { DownloadError } from '../../download/errors.js';
import { SlotError } from '../../slots/slot-error.js';

/**
 * Every code an update can end with on the twin (`iothubDM.firmwareUpdate.error.code`), with what it
 * means. This is the one closed list: the docs table (docs/update-workflow.md, "Error codes") is
 * checked against it by a test, and every error is mapped to it once, by `toUpdateError`, at the
 * runner's boundary.
 */
export const UPDATE_ERROR_CODES = {
  // The bundle and its signature
  unsigned: 'the bundle carries no signature',
  untrustedKey: 'no signature by a key this device trusts',
  signatureInvalid: "a trusted key's signature does not hold: the header was altered",
  badKey: 'a trusted key file on the device is not a usable ed25519 public key',
  incompatible: "the device's model is not in the bundle, or a payload names a partition this device lacks",
  downgrade: "the bundle's security version is below the device's anti-rollback floor",
  hashMismatch: "a chunk's bytes do not match the signed manifest",
  truncated: 'the bundle ended early',
  malformed: 'the bytes are not a well-formed bundle',
  unsupportedFormat: 'a bundle format version this agent does not know (made by a newer `piota bundle create`)',
  chunkTooLarge: "a chunk is larger than the device's `maxChunkBytes`",
  notABundle: 'the file is not a piota bundle, and a plain image is not allowed here (or was not pinned)',
  noContentLength: 'a plain image was served without a size, so it could not be size-checked first',
  tooLarge: 'a payload is bigger than its partition (refused before writing)',
  sha256Mismatch: 'the file does not match the pinned `sha256`',
  versionMismatch: "the bundle's version is not the one the request named",
  // The download
  downloadError: 'HTTP or network trouble that did not clear after the retries',
  notHttps: 'the URI, or a redirect, is not https',
  tlsError: "the server's certificate is not trusted or names another host",
  // The slot and the boot firmware
  slotUnavailable: 'the target slot is mounted, busy or missing',
  writeFailed: 'writing the target slot failed (I/O error, disk full)',
  readbackMismatch: 'the slot read back from the medium differs from the signed manifest',
  bootConfigError: 'the boot firmware interface failed: autoboot.txt, the device tree or the reboot command',
  rebootFailed: 'a reboot was asked for and did not happen in time',
  trialFailed: 'the trial boot did not come up, or the board fell back to the old slot',
  trialUnhealthy: 'the trial came up but did not reach the hub in time',
  // The workflow itself
  cancelled: 'stopped by `firmwareUpdateCancel`',
  bootLoop: 'the loop guard stopped an update that kept re-entering one phase',
  unknownPhase: 'a newer agent left the update in a phase this agent does not know; it was ended safely',
  internalError: 'a bug in piota; the message says where',
} as const;

export type UpdateErrorCode = keyof typeof UPDATE_ERROR_CODES;

export interface UpdateError {
  code: UpdateErrorCode;
  message: string;
}

/** Why a phase failed, with its code from the closed list: thrown by phase work, mapped as it is. */
export class UpdateFailure extends Error {
  override name = 'UpdateFailure';
  constructor(
    readonly code: UpdateErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** The one translation of any error into the twin's vocabulary. */
export function toUpdateError(err: unknown): UpdateError {
  if (err instanceof UpdateFailure) return { code: err.code, message: err.message };
  if (err instanceof BundleError) {
    // invalidArgument and signatureSlotsFull are tool-side codes; on a device they mean a bad key or a bug.
    if (err.code === 'invalidArgument' || err.code === 'signatureSlotsFull') return { code: 'internalError', message: err.message };
    return { code: err.code, message: err.message };
  }
  if (err instanceof DownloadError) {
    if (err.code === 'notHttps' || err.code === 'tlsError') return { code: err.code, message: err.message };
    return { code: 'downloadError', message: err.message };
  }
  if (err instanceof SlotError) {
    const unavailable = err.code === 'mounted' || err.code === 'busy' || err.code === 'notFound' || err.code === 'notPartition';
    if (err.code === 'tooLarge') return { code: 'tooLarge', message: err.message };
    return { code: unavailable ? 'slotUnavailable' : 'writeFailed', message: err.message };
  }
  if (err instanceof BootError) return { code: 'bootConfigError', message: err.message };
  const e = err as NodeJS.ErrnoException | undefined;
  if (e && typeof e.code === 'string') {
    if (e.code === 'EBUSY' || e.code === 'EACCES' || e.code === 'EPERM') return { code: 'slotUnavailable', message: e.message };
    if (e.code === 'ENOSPC' || e.code === 'EIO' || e.code === 'EROFS') return { code: 'writeFailed', message: e.message };
  }
  return { code: 'internalError', message: e?.message ?? String(err) };
}
