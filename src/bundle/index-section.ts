import { createHash } from 'node:crypto';
import { ByteReader } from './byte-reader.js';
import { BundleError } from './errors.js';
import type { BundleManifest } from './manifest.js';

/** Sections are streamed through a buffer this big, so a 4 GiB image's unit store costs no more memory. */
const PIECE = 256 * 1024;

/**
 * Format 2, for `piota bundle verify`: reads what follows the last chunk (every payload's unit
 * store, then every block index) from `source`, which starts at `manifest.chunksEnd`, and checks
 * each against its signed sha256, then that the file ends there. A device's full install does not
 * read these sections (it stops after the last chunk); an adaptive install fetches what it needs
 * by Range and checks it on its own.
 */
export async function checkFormat2Sections(source: AsyncIterable<Uint8Array>, manifest: BundleManifest): Promise<void> {
  const reader = new ByteReader(source);
  try {
    const piece = Buffer.allocUnsafe(PIECE);
    const sections = [
      ...manifest.payloads.map((p) => p.blocks && { what: `the unit store of ${p.name}`, offset: p.blocks.storeOffset, size: p.blocks.storeSize, sha256: p.blocks.storeSha256 }),
      ...manifest.payloads.map((p) => p.blocks && { what: `the block index of ${p.name}`, offset: p.blocks.offset, size: p.blocks.size, sha256: p.blocks.sha256 }),
    ].filter((s) => s !== undefined);
    for (const s of sections) {
      const hash = createHash('sha256');
      for (let left = s.size; left > 0; ) {
        const want = Math.min(left, PIECE);
        const got = await reader.fill(piece.subarray(0, want));
        hash.update(piece.subarray(0, got));
        if (got < want) {
          throw new BundleError('truncated', `the bundle ends at byte ${s.offset + s.size - left + got}, inside ${s.what}; the whole bundle is ${manifest.bundleSize} bytes`);
        }
        left -= got;
      }
      const digest = hash.digest('hex');
      if (digest !== s.sha256) {
        throw new BundleError('hashMismatch', `${s.what} (bundle bytes ${s.offset}..${s.offset + s.size}) has sha256 ${digest}, the signed manifest says ${s.sha256}`);
      }
    }
    if (!(await reader.atEnd())) {
      throw new BundleError('malformed', `the bundle goes on past its end at byte ${manifest.bundleSize} (the signed manifest lists no more sections)`);
    }
  } finally {
    await reader.close();
  }
}
