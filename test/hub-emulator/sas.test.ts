import { describe, expect, it } from 'vitest';
import deviceSdk from 'azure-iot-device';
import iothub from 'azure-iothub';
import { generateKey, makeSasToken, parseSasToken, SasError, verifySasToken } from '../../src/hub-emulator/sas.js';

const now = () => Math.floor(Date.now() / 1000);

describe('SAS tokens', () => {
  const key = generateKey();

  it('verifies tokens made by the device SDK and the service SDK', () => {
    const device = deviceSdk.SharedAccessSignature.create('localhost:18883', 'pi-1', key, now() + 60).toString();
    const parsed = parseSasToken(device);
    expect(parsed.resource).toBe('localhost:18883/devices/pi-1');
    expect(() => verifySasToken(parsed, [key])).not.toThrow();
    const service = iothub.SharedAccessSignature.create('localhost', 'iothubowner', key, now() + 60).toString();
    const s = parseSasToken(service);
    expect(s.keyName).toBe('iothubowner');
    expect(() => verifySasToken(s, [generateKey(), key])).not.toThrow();
  });

  it('refuses a wrong key, an expired token, and a tampered resource or expiry', () => {
    const token = makeSasToken('h/devices/d', key, now() + 60);
    expect(() => verifySasToken(parseSasToken(token), [generateKey()])).toThrow(SasError);
    expect(() => verifySasToken(parseSasToken(makeSasToken('h/devices/d', key, now() - 1)), [key])).toThrow('token expired');
    expect(() => verifySasToken(parseSasToken(token.replace('devices%2Fd', 'devices%2Fe')), [key])).toThrow('signature');
    expect(() => verifySasToken(parseSasToken(token.replace(/se=(\d+)/, (_, se) => `se=${Number(se) + 1}`)), [key])).toThrow('signature');
  });

  it('names what is missing in a malformed token', () => {
    expect(() => parseSasToken('Bearer x')).toThrow('not a SharedAccessSignature');
    expect(() => parseSasToken('SharedAccessSignature sig=a&se=1')).toThrow('no sr');
    expect(() => parseSasToken('SharedAccessSignature sr=a&se=1')).toThrow('no sig');
    expect(() => parseSasToken('SharedAccessSignature sr=a&sig=b&se=soon')).toThrow('se');
    expect(() => parseSasToken('SharedAccessSignature sr=%E0%A4%A&sig=b&se=1')).toThrow('URL-encoded');
  });
});
