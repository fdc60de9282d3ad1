import { HubError } from './errors.js';
import { generateKey } from './sas.js';
import { newTwin, sectionView, twinEtag, type JsonObject, type TwinState } from './twin.js';

/** One registered device: its identity (what the registry API shows) and its twin. */
export interface DeviceRecord {
  deviceId: string;
  generationId: string;
  /** Counts identity changes; the identity etag shown to the service is derived from it. */
  identityVersion: number;
  status: 'enabled' | 'disabled';
  statusReason: string | null;
  statusUpdatedTime: string;
  primaryKey: string;
  secondaryKey: string;
  twin: TwinState;
}

/** IoT Hub's device id rule: up to 128 ASCII letters, digits and `-.%_*?!(),:=@$'`. */
const DEVICE_ID = /^[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}$/;

export function checkDeviceId(id: string): void {
  if (!DEVICE_ID.test(id)) {
    throw new HubError('ArgumentInvalid', `device id '${id}' is invalid: up to 128 characters from letters, digits and -.%_*?!(),:=@$'`);
  }
}

const NEVER = '0001-01-01T00:00:00Z';

export function newDeviceRecord(deviceId: string, keys: { primaryKey?: string; secondaryKey?: string } = {}, status: 'enabled' | 'disabled' = 'enabled'): DeviceRecord {
  checkDeviceId(deviceId);
  return {
    deviceId,
    generationId: String(Date.now() * 1000 + Math.floor(Math.random() * 1000)),
    identityVersion: 1,
    status,
    statusReason: null,
    statusUpdatedTime: NEVER,
    // Registry.create sends empty strings when the caller gave no keys: empty means "generate".
    primaryKey: keys.primaryKey || generateKey(),
    secondaryKey: keys.secondaryKey || generateKey(),
    twin: newTwin(),
  };
}

export function identityEtag(record: DeviceRecord): string {
  return Buffer.from(String(record.identityVersion)).toString('base64');
}

/** Live facts the registry does not persist. */
export interface Presence {
  connected: boolean;
  lastActivityTime?: string;
  connectionStateUpdatedTime?: string;
}

/** The device identity as `GET /devices/{id}` shows it. */
export function identityView(record: DeviceRecord, presence: Presence): JsonObject {
  return {
    deviceId: record.deviceId,
    generationId: record.generationId,
    etag: identityEtag(record),
    connectionState: presence.connected ? 'Connected' : 'Disconnected',
    status: record.status,
    statusReason: record.statusReason,
    connectionStateUpdatedTime: presence.connectionStateUpdatedTime ?? NEVER,
    statusUpdatedTime: record.statusUpdatedTime,
    lastActivityTime: presence.lastActivityTime ?? NEVER,
    cloudToDeviceMessageCount: 0,
    authentication: {
      symmetricKey: { primaryKey: record.primaryKey, secondaryKey: record.secondaryKey },
      x509Thumbprint: { primaryThumbprint: null, secondaryThumbprint: null },
      type: 'sas',
    },
    capabilities: { iotEdge: false },
  };
}

/** The twin as `GET /twins/{id}` and the device query show it. */
export function serviceTwinView(record: DeviceRecord, presence: Presence): JsonObject {
  return {
    deviceId: record.deviceId,
    etag: twinEtag(record.twin),
    deviceEtag: identityEtag(record),
    status: record.status,
    statusReason: record.statusReason,
    statusUpdateTime: record.statusUpdatedTime,
    connectionState: presence.connected ? 'Connected' : 'Disconnected',
    lastActivityTime: presence.lastActivityTime ?? NEVER,
    cloudToDeviceMessageCount: 0,
    authenticationType: 'sas',
    x509Thumbprint: { primaryThumbprint: null, secondaryThumbprint: null },
    modelId: '',
    version: record.twin.version,
    tags: record.twin.tags,
    properties: { desired: sectionView(record.twin.desired), reported: sectionView(record.twin.reported) },
    capabilities: { iotEdge: false },
  };
}

/** Checks a record read from disk (a hand-edited or damaged file names its problem). */
export function validateDeviceRecord(data: unknown): DeviceRecord {
  const r = data as Partial<DeviceRecord> | null;
  if (typeof r !== 'object' || r === null) throw new Error('expected a device record object');
  for (const field of ['deviceId', 'generationId', 'primaryKey', 'secondaryKey'] as const) {
    if (typeof r[field] !== 'string') throw new Error(`field '${field}' must be a string`);
  }
  if (r.status !== 'enabled' && r.status !== 'disabled') throw new Error("field 'status' must be 'enabled' or 'disabled'");
  if (typeof r.identityVersion !== 'number') throw new Error("field 'identityVersion' must be a number");
  const t = r.twin as Partial<TwinState> | undefined;
  if (!t || typeof t.version !== 'number' || typeof t.tags !== 'object' || !t.desired || !t.reported) {
    throw new Error("field 'twin' must hold version, tags, desired and reported");
  }
  return r as DeviceRecord;
}
