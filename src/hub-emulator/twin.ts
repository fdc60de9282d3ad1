import { HubError } from './errors.js';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** `$metadata` as IoT Hub keeps it: a `$lastUpdated` for every node that a patch touched. */
export interface MetaNode {
  $lastUpdated: string;
  $lastUpdatedVersion?: number;
  [key: string]: MetaNode | string | number | undefined;
}

export interface Section {
  version: number;
  values: JsonObject;
  metadata: MetaNode;
}

/** The persisted twin of one device (identity fields live in the device record). */
export interface TwinState {
  /** Counts every change of tags, desired or reported, like the twin's top-level `version`. */
  version: number;
  tags: JsonObject;
  desired: Section;
  reported: Section;
}

export const limits = {
  tagsBytes: 8 * 1024,
  desiredBytes: 32 * 1024,
  reportedBytes: 32 * 1024,
  depth: 10,
  keyBytes: 1024,
};

export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function newTwin(now = new Date()): TwinState {
  const stamp = now.toISOString();
  return {
    version: 1,
    tags: {},
    desired: { version: 1, values: {}, metadata: { $lastUpdated: stamp, $lastUpdatedVersion: 1 } },
    reported: { version: 1, values: {}, metadata: { $lastUpdated: stamp } },
  };
}

/** The twin's etag: IoT Hub shows an opaque base64 string that changes with every twin change. */
export function twinEtag(twin: TwinState): string {
  const buf = Buffer.alloc(8);
  buf.writeBigUInt64BE(BigInt(twin.version));
  return buf.toString('base64');
}

/**
 * IoT Hub's size rule: keys count as their UTF-8 length, strings as theirs, numbers 8 bytes,
 * booleans 4; objects and arrays count what they hold.
 */
export function documentSize(value: Json): number {
  if (value === null) return 0;
  if (typeof value === 'string') return Buffer.byteLength(value, 'utf8');
  if (typeof value === 'number') return 8;
  if (typeof value === 'boolean') return 4;
  if (Array.isArray(value)) return value.reduce<number>((sum, v) => sum + documentSize(v), 0);
  let sum = 0;
  for (const [k, v] of Object.entries(value)) sum += Buffer.byteLength(k, 'utf8') + documentSize(v);
  return sum;
}

/**
 * Checks a patch as IoT Hub does: keys without '.', '$', spaces or control characters, at most
 * 1 KB each, objects at most 10 levels deep. Throws ArgumentInvalid naming the key.
 */
export function validatePatch(patch: JsonObject, where: string, depth = 1): void {
  if (depth > limits.depth) throw new HubError('ArgumentInvalid', `${where}: nested deeper than ${limits.depth} levels`);
  for (const [key, value] of Object.entries(patch)) {
    // eslint-disable-next-line no-control-regex
    if (key === '' || /[.$ \u0000-\u001f\u007f-\u009f]/.test(key) || key === '__proto__') {
      throw new HubError('ArgumentInvalid', `${where}: property name '${key}' is not allowed (no '.', '$', spaces or control characters)`);
    }
    if (Buffer.byteLength(key, 'utf8') > limits.keyBytes) {
      throw new HubError('ArgumentInvalid', `${where}: property name longer than ${limits.keyBytes} bytes`);
    }
    if (isObject(value)) validatePatch(value, `${where}.${key}`, depth + 1);
    else if (Array.isArray(value)) validateArray(value, `${where}.${key}`, depth + 1);
  }
}

function validateArray(values: Json[], where: string, depth: number): void {
  if (depth > limits.depth) throw new HubError('ArgumentInvalid', `${where}: nested deeper than ${limits.depth} levels`);
  for (const v of values) {
    if (isObject(v)) validatePatch(v, where, depth + 1);
    else if (Array.isArray(v)) validateArray(v, where, depth + 1);
  }
}

/** Removes the read-only `$version` and `$metadata` a caller may echo back from a twin it read. */
export function withoutReadOnly(patch: JsonObject): JsonObject {
  const copy: JsonObject = {};
  for (const [k, v] of Object.entries(patch)) if (k !== '$version' && k !== '$metadata') copy[k] = v;
  return copy;
}

function stripNulls(value: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(value)) {
    if (v === null) continue;
    out[k] = isObject(v) ? stripNulls(v) : v;
  }
  return out;
}

function stampFor(stamp: string, version: number | undefined): MetaNode {
  return version === undefined ? { $lastUpdated: stamp } : { $lastUpdated: stamp, $lastUpdatedVersion: version };
}

function metaForValue(value: Json, stamp: string, version: number | undefined): MetaNode {
  const node = stampFor(stamp, version);
  if (isObject(value)) for (const [k, v] of Object.entries(value)) node[k] = metaForValue(v, stamp, version);
  return node;
}

/** JSON merge-patch (null deletes), recording `$lastUpdated` on every node it touches. */
function mergeInto(values: JsonObject, meta: MetaNode, patch: JsonObject, stamp: string, version: number | undefined): void {
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) {
      delete values[key];
      delete meta[key];
    } else if (isObject(value) && isObject(values[key])) {
      const child = meta[key];
      const childMeta = typeof child === 'object' ? child : stampFor(stamp, version);
      meta[key] = childMeta;
      mergeInto(values[key] as JsonObject, childMeta, value, stamp, version);
      Object.assign(childMeta, stampFor(stamp, version));
    } else {
      const clean = isObject(value) ? stripNulls(value) : value;
      values[key] = clean;
      meta[key] = metaForValue(clean, stamp, version);
    }
  }
}

function applyToSection(section: Section, patch: JsonObject, limitBytes: number, name: string, withVersion: boolean): Section {
  const next: Section = structuredClone(section);
  next.version += 1;
  const stamp = new Date().toISOString();
  const version = withVersion ? next.version : undefined;
  mergeInto(next.values, next.metadata, patch, stamp, version);
  Object.assign(next.metadata, stampFor(stamp, version));
  const size = documentSize(next.values);
  if (size > limitBytes) {
    throw new HubError('ArgumentInvalid', `${name} would be ${size} bytes, over IoT Hub's limit of ${limitBytes}`);
  }
  return next;
}

/** Applies a reported-properties patch from the device; returns the new twin (the old one is untouched). */
export function patchReported(twin: TwinState, patch: JsonObject): TwinState {
  const clean = withoutReadOnly(patch);
  validatePatch(clean, 'properties.reported');
  return { ...twin, version: twin.version + 1, reported: applyToSection(twin.reported, clean, limits.reportedBytes, 'properties.reported', false) };
}

/** Applies a desired-properties patch from the service; `$lastUpdatedVersion` as IoT Hub records it. */
export function patchDesired(twin: TwinState, patch: JsonObject): TwinState {
  const clean = withoutReadOnly(patch);
  validatePatch(clean, 'properties.desired');
  return { ...twin, version: twin.version + 1, desired: applyToSection(twin.desired, clean, limits.desiredBytes, 'properties.desired', true) };
}

/** Merges a tags patch (null deletes). */
export function patchTags(twin: TwinState, patch: JsonObject): TwinState {
  validatePatch(patch, 'tags');
  const tags = structuredClone(twin.tags);
  mergeInto(tags, { $lastUpdated: '' }, patch, '', undefined);
  const size = documentSize(tags);
  if (size > limits.tagsBytes) throw new HubError('ArgumentInvalid', `tags would be ${size} bytes, over IoT Hub's limit of ${limits.tagsBytes}`);
  return { ...twin, version: twin.version + 1, tags };
}

/** What a device gets for a twin GET: values and `$version`, no metadata. */
export function deviceTwinView(twin: TwinState): JsonObject {
  return {
    desired: { ...twin.desired.values, $version: twin.desired.version },
    reported: { ...twin.reported.values, $version: twin.reported.version },
  };
}

/** A properties section as the service API shows it. */
export function sectionView(section: Section): JsonObject {
  return { ...section.values, $metadata: section.metadata as unknown as JsonObject, $version: section.version };
}
