import { createHash } from 'node:crypto';
import type { ByteReader } from './byte-reader.js';
import { BundleError } from './errors.js';
import type { BundleManifest } from './manifest.js';

/** Index sections are streamed through a buffer this big, so a 32 MiB index costs no more memory. */
const PIECE = 256 * 1024;

/**
 * Format 2: reads the block index sections that follow the last chunk and checks each against its
 * signed sha256, holding one piece at a time. A full install passes over them this way (they are a
 * fraction of a percent of the bundle); an adaptive install fetches them by Range instead.
 */
export async function checkIndexSections(reader: ByteReader, manifest: BundleManifest): Promise<void> {
  const piece = Buffer.allocUnsafe(PIECE);
  for (const p of manifest.payloads) {
    if (!p.blocks) continue;
    const hash = createHash('sha256');
    let left = p.blocks.size;
    while (left > 0) {
      const want = Math.min(left, PIECE);
      const got = await reader.fill(piece.subarray(0, want));
      hash.update(piece.subarray(0, got));
      if (got < want) {
        throw new BundleError('truncated', `the bundle ends at byte ${p.blocks.offset + p.blocks.size - left + got}, inside the block index of ${p.name}; the whole bundle is ${manifest.bundleSize} bytes`);
      }
      left -= got;
    }
    const digest = hash.digest('hex');
    if (digest !== p.blocks.sha256) {
      throw new BundleError('hashMismatch', `the block index of ${p.name} (bundle bytes ${p.blocks.offset}..${p.blocks.offset + p.blocks.size}) has sha256 ${digest}, the signed manifest says ${p.blocks.sha256}`);
    }
  }
}
