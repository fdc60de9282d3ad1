import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { MANIFEST_OFFSET, PREAMBLE_LENGTH, signedMessage } from '../../src/bundle/format.js';
import { generateKeyPair, keyIdOf, loadPrivateKey, loadPublicKey, publicKeyOf } from '../../src/bundle/keys.js';
import { device, imageBytes, makeBundle, verifyAll, workspace, type Workspace } from './fixtures.js';

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;
if (!hasOpenssl) console.warn('keys.test.ts: openssl is not installed, skipping the openssl interoperability tests');

function openssl(...args: string[]): string {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

let ws: Workspace;
beforeAll(async () => {
  ws = await workspace();
});
afterAll(() => ws.remove());

describe('keys', () => {
  it('generates PKCS#8 / SPKI PEM with a 32-hex-digit id derived from the public key', () => {
    const pair = generateKeyPair();
    expect(pair.privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(pair.publicKeyPem).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    expect(pair.keyId).toMatch(/^[0-9a-f]{32}$/);
    expect(keyIdOf(pair.publicKeyPem)).toBe(pair.keyId);
    expect(keyIdOf(publicKeyOf(loadPrivateKey(pair.privateKeyPem)))).toBe(pair.keyId);
    expect(generateKeyPair().keyId).not.toBe(pair.keyId);
  });

  it('refuses keys that are not ed25519 PEM, naming the source', () => {
    expect(() => loadPrivateKey('hello', 'k.pem')).toThrow(expect.objectContaining({ code: 'badKey', message: expect.stringContaining('k.pem') }));
    expect(() => loadPublicKey(generateKeyPair().privateKeyPem, 'p.pem')).toThrow(expect.objectContaining({ code: 'badKey', message: expect.stringContaining('private key') }));
    expect(() => loadPublicKey('-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n')).toThrow(expect.objectContaining({ code: 'badKey' }));
  });
});

describe.skipIf(!hasOpenssl)('keys made by openssl', () => {
  it('sign and verify bundles; the key id matches', async () => {
    openssl('genpkey', '-algorithm', 'ed25519', '-out', ws.path('o.key'));
    openssl('pkey', '-in', ws.path('o.key'), '-pubout', '-out', ws.path('o.pub'));
    const privateKeyPem = await readFile(ws.path('o.key'), 'utf8');
    const publicKeyPem = await readFile(ws.path('o.pub'), 'utf8');
    const keyId = keyIdOf(publicKeyPem);
    expect(keyIdOf(publicKeyOf(loadPrivateKey(privateKeyPem)))).toBe(keyId);
    const key = { privateKeyPem, publicKeyPem, keyId };
    const made = await makeBundle(ws, 'openssl', { rootfs: imageBytes(10_000) }, { key });
    const { error } = await verifyAll(made.bytes, device(key));
    expect(error).toBeUndefined();
  });

  it('reads our keys, and verifies our signatures as plain ed25519', async () => {
    const pair = generateKeyPair();
    await writeFile(ws.path('n.key'), pair.privateKeyPem);
    expect(openssl('pkey', '-in', ws.path('n.key'), '-pubout')).toBe(pair.publicKeyPem);
    await writeFile(ws.path('n.pub'), pair.publicKeyPem);
    const made = await makeBundle(ws, 'ours', { rootfs: imageBytes(5_000) }, { key: pair });
    const manifestLength = made.bytes.readUInt32BE(12);
    const message = signedMessage(made.bytes.subarray(0, PREAMBLE_LENGTH), made.bytes.subarray(MANIFEST_OFFSET, MANIFEST_OFFSET + manifestLength));
    await writeFile(ws.path('msg'), message);
    await writeFile(ws.path('sig'), made.bytes.subarray(PREAMBLE_LENGTH + 4 + 16, PREAMBLE_LENGTH + 4 + 16 + 64));
    const out = openssl('pkeyutl', '-verify', '-pubin', '-inkey', ws.path('n.pub'), '-rawin', '-in', ws.path('msg'), '-sigfile', ws.path('sig'));
    expect(out).toContain('Signature Verified Successfully');
  });

  it('refuses an RSA key and an encrypted key with a reason', () => {
    openssl('genpkey', '-algorithm', 'rsa', '-pkeyopt', 'rsa_keygen_bits:1024', '-out', ws.path('rsa.key'));
    openssl('genpkey', '-algorithm', 'ed25519', '-aes256', '-pass', 'pass:secret', '-out', ws.path('enc.key'));
    const rsa = readFileSync(ws.path('rsa.key'), 'utf8');
    const enc = readFileSync(ws.path('enc.key'), 'utf8');
    expect(() => loadPrivateKey(rsa, 'rsa.key')).toThrow(/rsa.key: an rsa key, piota signs with ed25519/);
    expect(() => loadPrivateKey(enc, 'enc.key')).toThrow(/enc.key: it is encrypted/);
  });
});
