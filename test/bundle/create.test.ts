import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { createBundle, type CreateBundleOptions } from '../../src/bundle/create.js';
import { MANIFEST_OFFSET, PREAMBLE_LENGTH, SIGNATURE_AREA_LENGTH, SIGNATURE_SLOTS, encodePreamble, encodeSignatureArea, signedMessage } from '../../src/bundle/format.js';
import { generateKeyPair, loadPrivateKey, signMessage } from '../../src/bundle/keys.js';
import { readBundleFileHeader } from '../../src/bundle/inspect.js';
import { signBundle } from '../../src/bundle/sign.js';
import { verifyBundleFile } from '../../src/bundle/verify-file.js';
import { device, imageBytes, makeBundle, verifyAll, workspace, type Workspace } from './fixtures.js';

let ws: Workspace;
beforeAll(async () => {
  ws = await workspace();
  await writeFile(ws.path('small.img'), imageBytes(10_000));
  await writeFile(ws.path('empty.img'), '');
});
afterAll(() => ws.remove());

describe('createBundle options', () => {
  const base = (): CreateBundleOptions => ({
    out: ws.path('x.bundle'),
    version: '1.0',
    compatible: ['raspberrypi4-64'],
    payloads: [{ name: 'rootfs', file: ws.path('small.img') }],
    chunkSize: 4096,
  });
  const cases: [string, Partial<CreateBundleOptions>, RegExp][] = [
    ['a version with spaces', { version: '1 0' }, /version "1 0"/],
    ['no compatible model', { compatible: [] }, /compatible model/],
    ['a bad model name', { compatible: ['rpi 4'] }, /compatible model "rpi 4"/],
    ['a bad payload name', { payloads: [{ name: 'Root/fs', file: 'x' }] }, /payload name "Root\/fs"/],
    ['two payloads for one partition', { payloads: [{ name: 'rootfs', file: 'a' }, { name: 'rootfs', file: 'b' }] }, /same partition/],
    ['a negative security version', { securityVersion: -1 }, /securityVersion/],
    ['a tiny chunk size', { chunkSize: 100 }, /chunk size must be from 4096/],
    ['a huge chunk size', { chunkSize: 65 * 1024 * 1024 }, /chunk size/],
    ['a missing image', { payloads: [{ name: 'rootfs', file: '/nonexistent/x.img' }] }, /payload rootfs: cannot read \/nonexistent\/x.img \(ENOENT\)/],
    ['an empty image', { payloads: [{ name: 'rootfs', file: '' }] }, /payload rootfs/],
    ['a directory as image', { payloads: [{ name: 'rootfs', file: '/tmp' }] }, /not a regular file/],
    ['an unknown compression', { compression: 'zstd' as 'gzip' }, /compression must be one of (gzip, none|none, gzip) in format 2/],
  ];
  for (const [what, change, message] of cases) {
    it(`refuses ${what}`, async () => {
      await expect(createBundle({ ...base(), ...change })).rejects.toMatchObject({ code: 'invalidArgument', message: expect.stringMatching(message) });
    });
  }

  it('refuses an empty image file and a bad signing key', async () => {
    await expect(createBundle({ ...base(), payloads: [{ name: 'rootfs', file: ws.path('empty.img') }] })).rejects.toMatchObject({ message: /is empty/ });
    await expect(createBundle({ ...base(), signingKeys: ['nope'] })).rejects.toMatchObject({ code: 'badKey' });
  });

  it('refuses, before reading anything, an image whose chunk list would pass the manifest bound', async () => {
    // 200 MiB in 4 KiB chunks is 51200 chunks: too many for the 4 MiB manifest. Sparse, so nothing is written.
    execFileSync('truncate', ['-s', '200M', ws.path('sparse.img')]);
    await expect(createBundle({ ...base(), payloads: [{ name: 'rootfs', file: ws.path('sparse.img') }] })).rejects.toMatchObject({
      code: 'invalidArgument',
      message: expect.stringMatching(/manifest would take \d+ bytes.*larger chunk size/),
    });
  });

  it('leaves no file and no temporary behind when it fails', async () => {
    const before = await readdir(ws.dir);
    await expect(createBundle({ ...base(), out: ws.path('fail.bundle'), signingKeys: ['nope'] })).rejects.toThrow();
    expect(await readdir(ws.dir)).toEqual(before);
  });

  it('keeps an image whose size is an exact multiple of the chunk size whole', async () => {
    const made = await makeBundle(ws, 'exact', { rootfs: imageBytes(3 * 4096) });
    const { chunks, error } = await verifyAll(made.bytes, device(made.key));
    expect(error).toBeUndefined();
    expect(chunks.map((c) => c.data.length)).toEqual([4096, 4096, 4096]);
  });
});

describe('separate signing', () => {
  it('an unsigned bundle signed later verifies; only the signature area changed', async () => {
    const buildKey = generateKeyPair();
    const unsigned = await makeBundle(ws, 'later', { rootfs: imageBytes(20_000) }, { signingKeys: [], key: buildKey });
    expect((await verifyAll(unsigned.bytes, device(buildKey))).error?.code).toBe('unsigned');
    const signer = generateKeyPair();
    const signed = await signBundle(unsigned.file, signer.privateKeyPem);
    expect(signed).toMatchObject({ keyId: signer.keyId, replaced: false, signedBy: [signer.keyId] });
    const after = await readFile(unsigned.file);
    expect(after.length).toBe(unsigned.bytes.length);
    expect(after.subarray(0, PREAMBLE_LENGTH).equals(unsigned.bytes.subarray(0, PREAMBLE_LENGTH))).toBe(true);
    expect(after.subarray(MANIFEST_OFFSET).equals(unsigned.bytes.subarray(MANIFEST_OFFSET))).toBe(true);
    expect((await verifyAll(after, device(signer))).error).toBeUndefined();
    await verifyBundleFile(unsigned.file, device(signer));

    const again = await signBundle(unsigned.file, signer.privateKeyPem);
    expect(again).toMatchObject({ replaced: true, signedBy: [signer.keyId] });
  });

  it(`holds up to ${SIGNATURE_SLOTS} signatures, then says so`, async () => {
    const made = await makeBundle(ws, 'full', { rootfs: imageBytes(5_000) });
    for (let i = 1; i < SIGNATURE_SLOTS; i++) await signBundle(made.file, generateKeyPair().privateKeyPem);
    expect((await readBundleFileHeader(made.file)).signatures).toHaveLength(SIGNATURE_SLOTS);
    await expect(signBundle(made.file, generateKeyPair().privateKeyPem)).rejects.toMatchObject({ code: 'signatureSlotsFull' });
    expect((await verifyAll(await readFile(made.file), device(made.key))).error).toBeUndefined();
  });

  it('refuses to sign something that is not a bundle', async () => {
    await expect(signBundle(ws.path('small.img'), generateKeyPair().privateKeyPem)).rejects.toMatchObject({ code: 'malformed' });
  });
});

describe('a signed header that lies', () => {
  /** An unsigned bundle whose manifest text is edited (same length), then signed by `key`. */
  async function edited(name: string, image: Buffer, from: string, to: string, compression: 'gzip' | 'none' = 'gzip') {
    const key = generateKeyPair();
    const made = await makeBundle(ws, name, { rootfs: image }, { signingKeys: [], key, compression });
    const text = made.bytes.toString('latin1');
    const at = text.indexOf(from, MANIFEST_OFFSET);
    expect(at).toBeGreaterThan(0);
    const bytes = Buffer.from(made.bytes);
    bytes.write(to, at, 'latin1');
    // Signed here rather than by signBundle, which refuses to sign a manifest it cannot parse.
    const manifestLength = bytes.readUInt32BE(12);
    const message = signedMessage(bytes.subarray(0, PREAMBLE_LENGTH), bytes.subarray(MANIFEST_OFFSET, MANIFEST_OFFSET + manifestLength));
    const signature = signMessage(loadPrivateKey(key.privateKeyPem), message);
    encodeSignatureArea([{ keyId: key.keyId, signature }]).copy(bytes, PREAMBLE_LENGTH);
    await writeFile(made.file, bytes);
    return { file: made.file, bytes, key };
  }

  it('a wrong image sha256: a device (chunk hashes) accepts, bundle verify finds hashMismatch', async () => {
    const image = imageBytes(9_000);
    const made = await makeBundle(ws, 'probe', { rootfs: image }, { signingKeys: [] });
    const sha = (await readBundleFileHeader(made.file)).manifest.payloads[0].imageSha256;
    const lie = await edited('sha', image, sha, '0'.repeat(64));
    expect((await verifyAll(lie.bytes, device(lie.key))).error).toBeUndefined();
    await expect(verifyBundleFile(lie.file, device(lie.key))).rejects.toMatchObject({ code: 'hashMismatch', message: expect.stringContaining('payload rootfs') });
  });

  it('a chunk that expands past its declared size: malformed (no decompression bomb)', async () => {
    const lie = await edited('bomb', imageBytes(4096), '"imageSize":4096', '"imageSize":4000');
    const { error } = await verifyAll(lie.bytes, device(lie.key));
    expect(error?.code).toBe('malformed');
    expect(error?.message).toContain('does not expand to 4000 bytes');
  });

  it('an unknown field: malformed, naming it', async () => {
    const lie = await edited('unknown', imageBytes(5000), '"createdAt"', '"createdXt"');
    expect((await verifyAll(lie.bytes, device(lie.key))).error).toMatchObject({ code: 'malformed', message: expect.stringContaining("unknown field 'createdXt'") });
    await expect(signBundle(lie.file, lie.key.privateKeyPem)).rejects.toMatchObject({ code: 'malformed' });
  });

  it('a chunk list that does not fit the image size: malformed', async () => {
    const lie = await edited('count', imageBytes(5000), '"imageSize":5000', '"imageSize":9000');
    expect((await verifyAll(lie.bytes, device(lie.key))).error).toMatchObject({ code: 'malformed', message: expect.stringContaining('imply 3') });
  });

  it('a manifest that is not JSON: malformed', async () => {
    const key = generateKeyPair();
    const manifest = Buffer.from('{"version": ');
    const preamble = encodePreamble(manifest.length);
    const signature = signMessage(loadPrivateKey(key.privateKeyPem), signedMessage(preamble, manifest));
    const area = encodeSignatureArea([{ keyId: key.keyId, signature }]);
    expect(area.length).toBe(SIGNATURE_AREA_LENGTH);
    const { error } = await verifyAll(Buffer.concat([preamble, area, manifest]), device(key));
    expect(error).toMatchObject({ code: 'malformed', message: expect.stringContaining('not valid UTF-8 JSON') });
  });
});
