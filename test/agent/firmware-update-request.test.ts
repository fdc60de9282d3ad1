import { describe, it, expect } from 'vitest';
import { parseFirmwareUpdateRequest, PayloadError } from '../../src/agent/firmware-update-request.js';

function refusal(payload: unknown): Error {
  try {
    parseFirmwareUpdateRequest(payload);
  } catch (e) {
    expect(e).toBeInstanceOf(PayloadError);
    return e as Error;
  }
  throw new Error(`accepted ${JSON.stringify(payload)}`);
}

describe('firmwareUpdate payload', () => {
  it('accepts the documented object and a bare URI string (Microsoft C sample)', () => {
    expect(parseFirmwareUpdateRequest({ fwPackageUri: 'https://x.example/fw.piota', extra: 1 })).toEqual({
      fwPackageUri: 'https://x.example/fw.piota', sha256: null, version: null, applyNow: false,
    });
    expect(parseFirmwareUpdateRequest('https://x.example/fw.piota').fwPackageUri).toBe('https://x.example/fw.piota');
    const sha = 'AB'.repeat(32);
    expect(parseFirmwareUpdateRequest({ fwPackageUri: 'https://h/f', sha256: sha, version: '1.2.3', applyWindow: 'now' })).toEqual({
      fwPackageUri: 'https://h/f', sha256: sha.toLowerCase(), version: '1.2.3', applyNow: true,
    });
  });

  it.each([
    [null, 'empty'],
    [42, 'a number'],
    [[], 'an array'],
    [{}, 'fwPackageUri is missing'],
    [{ fwPackageUri: 5 }, 'fwPackageUri must be a string, got number 5'],
    [{ fwPackageUri: '' }, 'fwPackageUri is empty'],
    [{ fwPackageUri: 'not a url' }, 'is not a URL'],
    [{ fwPackageUri: 'http://h/f' }, 'must be an https:// URL'],
    [{ fwPackageUri: 'https://u:p@h/f' }, 'user name or password'],
    [{ fwPackageUri: 'https://h/f', sha256: 'abc' }, 'sha256 must be 64 hexadecimal'],
    [{ fwPackageUri: 'https://h/f', version: 3 }, 'version must be a bundle version'],
    [{ fwPackageUri: 'https://h/f', applyWindow: 'later' }, 'applyWindow may only be "now"'],
  ])('refuses %j naming the problem', (payload, message) => {
    expect(refusal(payload).message).toContain(message);
  });

  it('shows a URI that is not a URL escaped and cut short', () => {
    const message = refusal({ fwPackageUri: `x\u0000${'\ny'.repeat(1000)}` }).message;
    expect(message).toMatch(/^fwPackageUri "x\\u0000(\\ny)+\\?n?…" is not a URL$/);
    expect(message.length).toBeLessThan(200);
  });

  describe('version: the bundle manifest\'s rule', () => {
    it.each(['1.0.1', '2026.11.3', '1.4.0-rc.1+build7', '1.0~beta', 'v2', 'A', 'a'.repeat(64)])('accepts %j', (version) => {
      expect(parseFirmwareUpdateRequest({ fwPackageUri: 'https://h/f', version }).version).toBe(version);
    });

    it.each([
      ['1.0\u0000', '"1.0\\u0000"'],
      ['1.0\n', '"1.0\\n"'],
      ['1.0\r\nX-Injected: 1', '"1.0\\r\\nX-Injected: 1"'],
      ['', '""'],
      [' 1.0', '" 1.0"'],
      ['1.0 ', '"1.0 "'],
      ['-1.0', '"-1.0"'],
      ['.hidden', '".hidden"'],
      ['1/2', '"1/2"'],
      ['1.0\t', '"1.0\\t"'],
      ['é1', '"é1"'],
      ['a'.repeat(65), 'aaaa…'],
    ])('refuses %j and shows it escaped', (version, shown) => {
      const message = refusal({ fwPackageUri: 'https://h/f', version }).message;
      expect(message).toContain('version must be a bundle version (1 to 64 letters, digits and . _ + ~ -, starting with a letter or digit)');
      expect(message).toContain(shown);
      // The message goes back to the caller and into the log: never a raw control character.
      expect([...message].filter((c) => c.charCodeAt(0) < 0x20)).toEqual([]);
    });

    it('treats null as absent, like the other optional fields', () => {
      expect(parseFirmwareUpdateRequest({ fwPackageUri: 'https://h/f', version: null }).version).toBeNull();
    });
  });
});
