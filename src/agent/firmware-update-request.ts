import { VERSION_TEXT } from '../bundle/manifest.js';

/** A validated `firmwareUpdate` method payload. */
export interface FirmwareUpdateRequest {
  fwPackageUri: string;
  sha256: string | null;
  version: string | null;
  applyNow: boolean;
}

/** The payload is wrong; the message says exactly what (sent back with status 400). */
export class PayloadError extends Error {
  override name = 'PayloadError';
}

const MAX_URI_LENGTH = 2048;

/**
 * Validates the payload of `firmwareUpdate`. Accepts `{"fwPackageUri": "https://...", ...}` and a bare
 * JSON string holding the URI (what Microsoft's C sample sends). Unknown fields are ignored.
 */
export function parseFirmwareUpdateRequest(payload: unknown): FirmwareUpdateRequest {
  if (typeof payload === 'string') return { fwPackageUri: checkUri(payload), sha256: null, version: null, applyNow: false };
  if (payload === null || payload === undefined) {
    throw new PayloadError('the payload is empty; expected {"fwPackageUri": "https://..."}');
  }
  if (typeof payload !== 'object' || Array.isArray(payload)) {
    throw new PayloadError(`the payload is ${Array.isArray(payload) ? 'an array' : `a ${typeof payload}`}; expected {"fwPackageUri": "https://..."}`);
  }
  const p = payload as Record<string, unknown>;
  if (!('fwPackageUri' in p)) throw new PayloadError('fwPackageUri is missing; expected {"fwPackageUri": "https://..."}');
  if (typeof p.fwPackageUri !== 'string') throw new PayloadError(`fwPackageUri must be a string, got ${describe(p.fwPackageUri)}`);
  const fwPackageUri = checkUri(p.fwPackageUri);

  let sha256: string | null = null;
  if (p.sha256 !== undefined && p.sha256 !== null) {
    if (typeof p.sha256 !== 'string' || !/^[0-9a-fA-F]{64}$/.test(p.sha256)) {
      throw new PayloadError(`sha256 must be 64 hexadecimal characters, got ${describe(p.sha256)}`);
    }
    sha256 = p.sha256.toLowerCase();
  }
  let version: string | null = null;
  if (p.version !== undefined && p.version !== null) {
    // The bundle manifest's own rule: a version no bundle can carry would only fail later as a
    // versionMismatch, and a plain image's version (this text) lands in the twin and the state file.
    if (typeof p.version !== 'string' || !VERSION_TEXT.test(p.version)) {
      throw new PayloadError(
        `version must be a bundle version (1 to 64 letters, digits and . _ + ~ -, starting with a letter or digit), got ${describe(p.version)}`,
      );
    }
    version = p.version;
  }
  let applyNow = false;
  if (p.applyWindow !== undefined && p.applyWindow !== null) {
    if (p.applyWindow !== 'now') throw new PayloadError(`applyWindow may only be "now", got ${describe(p.applyWindow)}`);
    applyNow = true;
  }
  return { fwPackageUri, sha256, version, applyNow };
}

function checkUri(raw: string): string {
  const uri = raw.trim();
  if (uri === '') throw new PayloadError('fwPackageUri is empty');
  if (uri.length > MAX_URI_LENGTH) throw new PayloadError(`fwPackageUri is longer than ${MAX_URI_LENGTH} characters`);
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    // Shown escaped and cut short: the answer and the log get neither control characters nor 2 KiB of junk.
    throw new PayloadError(`fwPackageUri ${describe(uri)} is not a URL`);
  }
  if (url.protocol !== 'https:') throw new PayloadError(`fwPackageUri must be an https:// URL, got ${url.protocol}//`);
  if (url.username || url.password) throw new PayloadError('fwPackageUri must not carry a user name or password');
  return url.href;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v);
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

/** A release written in the twin's desired properties (`properties.desired.piota.firmware`). */
export interface DesiredFirmware {
  /** Names the release for this device: acted on once (docs/update-workflow.md, "The desired-property trigger"). */
  id: string;
  request: FirmwareUpdateRequest;
}

const DESIRED_ID = /^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$/;

/** The `id` of a desired release, when it is a usable one (a refusal is recorded against it). */
export function desiredFirmwareId(value: unknown): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
  const id = (value as Record<string, unknown>).id;
  return typeof id === 'string' && DESIRED_ID.test(id) ? id : null;
}

/**
 * Validates `properties.desired.piota.firmware`: `{id, fwPackageUri, version, sha256?, applyWindow?}`,
 * by the method payload's own rules; `version` is required here, since a release a rollout names
 * always has one. Throws PayloadError naming the field.
 */
export function parseDesiredFirmware(value: unknown): DesiredFirmware {
  const where = 'properties.desired.piota.firmware';
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new PayloadError(`${where} is ${describe(value)}; expected {"id": "...", "fwPackageUri": "https://...", "version": "..."}`);
  }
  const p = value as Record<string, unknown>;
  if (p.id === undefined) throw new PayloadError(`${where}.id is missing`);
  if (typeof p.id !== 'string' || !DESIRED_ID.test(p.id)) {
    throw new PayloadError(`${where}.id must be 1 to 128 letters, digits and . _ : @ + - (starting with a letter or digit), got ${describe(p.id)}`);
  }
  if (p.version === undefined || p.version === null) throw new PayloadError(`${where}.version is missing`);
  try {
    return { id: p.id, request: parseFirmwareUpdateRequest(p) };
  } catch (err) {
    if (err instanceof PayloadError) throw new PayloadError(`${where}: ${err.message}`);
    throw err;
  }
}
