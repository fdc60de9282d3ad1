import { open } from 'node:fs/promises';
import { PREAMBLE_LENGTH, SIGNATURE_SLOTS, encodeSignatureArea, signedMessage } from './format.js';
import { BundleError } from './errors.js';
import { readHeaderFrom } from './inspect.js';
import { keyIdOf, loadPrivateKey, publicKeyOf, signMessage } from './keys.js';
import type { BundleManifest } from './manifest.js';

export interface SignedBundle {
  keyId: string;
  /** True when the key had signed before and its signature was replaced. */
  replaced: boolean;
  /** Ids of every key that has signed the bundle now. */
  signedBy: string[];
  manifest: BundleManifest;
}

/**
 * Adds a signature by `privateKeyPem` to a bundle file, in place: only the fixed-size signature
 * area is rewritten (then fsynced), so signing a multi-GiB bundle takes milliseconds. Signing with
 * a key that already signed replaces its signature.
 */
export async function signBundle(path: string, privateKeyPem: string, keySource = 'signing key'): Promise<SignedBundle> {
  const key = loadPrivateKey(privateKeyPem, keySource);
  const keyId = keyIdOf(publicKeyOf(key));
  const fh = await open(path, 'r+');
  try {
    const header = await readHeaderFrom(fh);
    const signature = signMessage(key, signedMessage(header.preamble, header.manifestBytes));
    const entries = header.signatures;
    const existing = entries.findIndex((e) => e.keyId === keyId);
    if (existing >= 0) entries[existing] = { keyId, signature };
    else if (entries.length >= SIGNATURE_SLOTS) {
      throw new BundleError('signatureSlotsFull', `${path} already carries ${SIGNATURE_SLOTS} signatures, the most a bundle holds`);
    } else entries.push({ keyId, signature });
    const area = encodeSignatureArea(entries);
    const { bytesWritten } = await fh.write(area, 0, area.length, PREAMBLE_LENGTH);
    if (bytesWritten !== area.length) throw new Error(`short write to ${path}`);
    await fh.sync();
    return { keyId, replaced: existing >= 0, signedBy: entries.map((e) => e.keyId), manifest: header.manifest };
  } finally {
    await fh.close();
  }
}
