import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { BundleError } from './errors.js';
import { KEY_ID_BYTES } from './format.js';

export interface GeneratedKeyPair {
  /** PKCS#8 PEM ("BEGIN PRIVATE KEY"), the same as `openssl genpkey -algorithm ed25519` writes. */
  privateKeyPem: string;
  /** SPKI PEM ("BEGIN PUBLIC KEY"), the same as `openssl pkey -pubout` writes. */
  publicKeyPem: string;
  keyId: string;
}

export function generateKeyPair(): GeneratedKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    keyId: keyIdOf(publicKey),
  };
}

/**
 * A key's id: the first 16 bytes of sha256 over its SPKI DER encoding, in hex. Derived from the
 * key itself, so nobody has to assign ids and a rotated key always gets a new one. Takes a
 * KeyObject or SPKI PEM text.
 */
export function keyIdOf(publicKey: KeyObject | string): string {
  const key = typeof publicKey === 'string' ? loadPublicKey(publicKey) : publicKey;
  const der = key.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest().subarray(0, KEY_ID_BYTES).toString('hex');
}

/** An ed25519 private key from PEM text; `source` names where it came from in errors. */
export function loadPrivateKey(pem: string | Buffer, source = 'private key'): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    const encrypted = (err as NodeJS.ErrnoException).code === 'ERR_MISSING_PASSPHRASE' || /ENCRYPTED/.test(pem.toString());
    const why = encrypted ? 'it is encrypted (piota needs an unencrypted PKCS#8 key)' : 'it is not a PEM private key';
    throw new BundleError('badKey', `${source}: ${why}`);
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new BundleError('badKey', `${source}: an ${key.asymmetricKeyType} key, piota signs with ed25519`);
  }
  return key;
}

/** An ed25519 public key from SPKI PEM text (a private key is refused: it does not belong on a device). */
export function loadPublicKey(pem: string | Buffer, source = 'public key'): KeyObject {
  const text = pem.toString();
  if (/PRIVATE KEY/.test(text)) {
    throw new BundleError('badKey', `${source}: this is a private key; give the public key (openssl pkey -in KEY -pubout)`);
  }
  let key: KeyObject;
  try {
    key = createPublicKey(text);
  } catch {
    throw new BundleError('badKey', `${source}: not a PEM public key (SPKI, "BEGIN PUBLIC KEY")`);
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new BundleError('badKey', `${source}: an ${key.asymmetricKeyType} key, piota verifies ed25519`);
  }
  return key;
}

export function publicKeyOf(privateKey: KeyObject): KeyObject {
  return createPublicKey(privateKey);
}

export function signMessage(privateKey: KeyObject, message: Buffer): Buffer {
  return sign(null, message, privateKey);
}

export function verifyMessage(publicKey: KeyObject, message: Buffer, signature: Buffer): boolean {
  return verify(null, message, publicKey, signature);
}
