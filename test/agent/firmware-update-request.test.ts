import { describe, it, expect } from 'vitest';
import { parseFirmwareUpdateRequest, PayloadError } from '../../src/agent/firmware-update-request.js';

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
    [{ fwPackageUri: 'https://h/f', version: 3 }, 'version must be a non-empty string'],
    [{ fwPackageUri: 'https://h/f', applyWindow: 'later' }, 'applyWindow may only be "now"'],
  ])('refuses %j naming the problem', (payload, message) => {
    let err: unknown;
    try {
      parseFirmwareUpdateRequest(payload);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PayloadError);
    expect((err as Error).message).toContain(message);
  });
});
