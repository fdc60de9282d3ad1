import { describe, it, expect } from 'vitest';
import { ConnectionStringError, parseDeviceConnectionString } from '../../src/agent/connection-string.js';

const KEY = 'c2VjcmV0LWtleS1mb3ItdGVzdHM=';
const GOOD = `HostName=fleet.azure-devices.net;DeviceId=pi-7;SharedAccessKey=${KEY}`;
const SUPPORTED = 'piota supports device connection strings with HostName, DeviceId and SharedAccessKey; x509=true and SharedAccessSignature strings (which expire) are not supported';

function refusal(text: string): string {
  try {
    parseDeviceConnectionString(text);
  } catch (err) {
    expect(err).toBeInstanceOf(ConnectionStringError);
    const message = (err as Error).message;
    // Every refusal says what is supported, and none repeats the key.
    expect(message.endsWith(SUPPORTED), message).toBe(true);
    expect(message).not.toContain(KEY);
    return message;
  }
  throw new Error(`accepted: ${JSON.stringify(text)}`);
}

describe('parseDeviceConnectionString', () => {
  it('returns the fields and the trimmed string', () => {
    expect(parseDeviceConnectionString(`  ${GOOD}\r\n`)).toEqual({
      hostName: 'fleet.azure-devices.net', deviceId: 'pi-7', sharedAccessKey: KEY, connectionString: GOOD,
    });
  });

  it('takes fields in any order, a port in HostName (the emulator), a GatewayHostName and a trailing ;', () => {
    const cs = `SharedAccessKey=${KEY};DeviceId=pi-7;HostName=localhost:8883;GatewayHostName=edge.local;`;
    expect(parseDeviceConnectionString(cs)).toMatchObject({ hostName: 'localhost:8883', deviceId: 'pi-7', sharedAccessKey: KEY });
  });

  it('keeps the = padding of a base64 key', () => {
    expect(parseDeviceConnectionString('HostName=h;DeviceId=d;SharedAccessKey=YQ==').sharedAccessKey).toBe('YQ==');
  });

  it.each([
    ['missing SharedAccessKey', 'HostName=h.azure-devices.net;DeviceId=pi-7', /^missing SharedAccessKey: /],
    ['missing HostName and DeviceId', `SharedAccessKey=${KEY}`, /^missing HostName, DeviceId: /],
    ['an empty DeviceId', `HostName=h;DeviceId=;SharedAccessKey=${KEY}`, /^missing DeviceId: /],
    ['x509=true', 'HostName=h.azure-devices.net;DeviceId=pi-7;x509=true', /^this is an x509 \(certificate\) connection string: /],
    ['a bare SharedAccessSignature', 'HostName=h;DeviceId=pi-7;SharedAccessSignature=SharedAccessSignature sr=h%2Fdevices%2Fpi-7&sig=abc&se=1', /^this is a SharedAccessSignature connection string \(it expires\): /],
    ['a SharedAccessSignature', 'HostName=h;DeviceId=pi-7;SharedAccessSignature=sr=h&sig=abc&se=1', /^this is a SharedAccessSignature connection string \(it expires\): /],
    ['a module id', `HostName=h;DeviceId=pi-7;ModuleId=m1;SharedAccessKey=${KEY}`, /^this is a module identity \(ModuleId=\), not a device: /],
    ['a service connection string', `HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey=${KEY}`, /^this is a hub \(service\) connection string/],
    ['a newline inside', `HostName=h;DeviceId=pi-7\n;SharedAccessKey=${KEY}`, /^the connection string contains control characters/],
    ['a NUL', `HostName=h;DeviceId=pi\u0000;SharedAccessKey=${KEY}`, /control characters/],
    ['a space inside', `HostName=h;DeviceId=pi 7;SharedAccessKey=${KEY}`, /^the connection string contains whitespace: /],
    ['a field given twice', `HostName=h;DeviceId=a;DeviceId=b;SharedAccessKey=${KEY}`, /^DeviceId is given twice: /],
    ['an unknown field', `HostName=h;DeviceId=a;SharedAccessKey=${KEY};Colour=red`, /^unknown field 'Colour': /],
    ['a field without =', `HostName=h;DeviceId=a;${KEY.replace(/=/g, '')}`, /^field 3 is not Name=value: /],
    ['nothing', ' \n', /^the connection string is empty: /],
  ])('refuses %s, naming it', (_name, text, pattern) => {
    expect(refusal(text)).toMatch(pattern);
  });
});
