import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { BundleError } from './errors.js';
import { checkFormat2Sections } from './index-section.js';
import { verifyHeader, verifyChunks, type VerifiedHeader, type VerifyPolicy } from './verifier.js';

/**
 * Everything `piota bundle verify` checks, over a bundle file: the header against `policy`, every
 * chunk's hash, and on top of what a device needs, each payload's whole-image sha256 (which catches
 * a faulty bundle creator; a device relies on the chunk hashes, which imply it).
 */
export async function verifyBundleFile(path: string, policy: VerifyPolicy): Promise<VerifiedHeader> {
  const header = await verifyHeader(createReadStream(path), policy);
  const hashes = new Map<string, Hash>(header.manifest.payloads.map((p) => [p.name, createHash('sha256')]));
  for await (const chunk of verifyChunks(header, header.rest)) hashes.get(chunk.payload)!.update(chunk.data);
  // Format 2: the unit stores and block indexes after the chunks, against their signed hashes.
  if (header.manifest.formatVersion >= 2) await checkFormat2Sections(createReadStream(path, { start: header.manifest.chunksEnd }), header.manifest);
  for (const p of header.manifest.payloads) {
    const digest = hashes.get(p.name)!.digest('hex');
    if (digest !== p.imageSha256) {
      throw new BundleError('hashMismatch', `payload ${p.name}: the expanded image has sha256 ${digest}, the signed manifest says ${p.imageSha256}`);
    }
  }
  return header;
}
