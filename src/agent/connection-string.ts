/**
 * The one rule for a device's IoT Hub connection string, shared by the daemon (which reads
 * `<stateDir>/connection-string`) and `piota config check --connection-string` (which
 * scripts/install.sh runs before it stores one), so both accept and refuse the same strings.
 *
 * Only symmetric-key device strings: the daemon renews its SAS tokens from the key, while a string
 * carrying a SharedAccessSignature stops working when that signature expires, and x509=true needs
 * a certificate and key the daemon has no setting for. Module identities are another kind of
 * client. Messages never repeat the key.
 */

export interface DeviceConnectionString {
  hostName: string;
  deviceId: string;
  sharedAccessKey: string;
  /** The string as given, trimmed: what the device SDK is handed. */
  connectionString: string;
}

export const SUPPORTED_CONNECTION_STRINGS =
  'piota supports device connection strings with HostName, DeviceId and SharedAccessKey; x509=true and SharedAccessSignature strings (which expire) are not supported';

/** A connection string piota cannot use; the message names the problem and what is supported. */
export class ConnectionStringError extends Error {
  override name = 'ConnectionStringError';
  constructor(problem: string) {
    super(`${problem}: ${SUPPORTED_CONNECTION_STRINGS}`);
  }
}

const REQUIRED = ['HostName', 'DeviceId', 'SharedAccessKey'] as const;
/** Optional fields the device SDK understands and piota passes through unchanged. */
const OPTIONAL = new Set(['GatewayHostName']);
/** Fields piota knows and refuses, with why. */
const REFUSED: Record<string, string> = {
  x509: 'an x509 (certificate) connection string',
  SharedAccessSignature: 'a SharedAccessSignature connection string (it expires)',
  ModuleId: 'a module identity (ModuleId=), not a device',
  SharedAccessKeyName: 'a hub (service) connection string (SharedAccessKeyName=), not a device one',
};

export function parseDeviceConnectionString(text: string): DeviceConnectionString {
  const connectionString = text.trim();
  if (connectionString === '') throw new ConnectionStringError('the connection string is empty');
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (/[\u0000-\u001f\u007f]/.test(connectionString)) throw new ConnectionStringError('the connection string contains control characters (a line break inside it?)');
  const fields = new Map<string, string>();
  for (const [i, part] of connectionString.split(';').entries()) {
    if (part === '') continue; // a trailing ';'
    const eq = part.indexOf('=');
    // Nothing of the text is shown: a stray piece may be (part of) the key.
    if (eq <= 0) throw new ConnectionStringError(`field ${i + 1} is not Name=value`);
    const name = part.slice(0, eq);
    if (fields.has(name)) throw new ConnectionStringError(`${name} is given twice`);
    fields.set(name, part.slice(eq + 1));
  }
  for (const [name, why] of Object.entries(REFUSED)) {
    if (fields.has(name)) throw new ConnectionStringError(`this is ${why}`);
  }
  // After the refused fields: a real SharedAccessSignature value has a space in it.
  if (/\s/.test(connectionString)) throw new ConnectionStringError('the connection string contains whitespace');
  for (const name of fields.keys()) {
    if (!OPTIONAL.has(name) && !(REQUIRED as readonly string[]).includes(name)) throw new ConnectionStringError(`unknown field '${name}'`);
  }
  const missing = REQUIRED.filter((name) => !fields.get(name));
  if (missing.length > 0) throw new ConnectionStringError(`missing ${missing.join(', ')}`);
  return {
    hostName: fields.get('HostName')!,
    deviceId: fields.get('DeviceId')!,
    sharedAccessKey: fields.get('SharedAccessKey')!,
    connectionString,
  };
}
