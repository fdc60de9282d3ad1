import { open, type FileHandle } from 'node:fs/promises';
import { BundleError } from './errors.js';
import {
  MANIFEST_OFFSET,
  PREAMBLE_LENGTH,
  SIGNATURE_AREA_LENGTH,
  decodePreamble,
  decodeSignatureArea,
  type SignatureEntry,
} from './format.js';
import { parseManifest, type BundleManifest } from './manifest.js';

/** A bundle file's header as written, nothing verified: for `bundle info` and `bundle sign`. */
export interface BundleFileHeader {
  preamble: Buffer;
  signatures: SignatureEntry[];
  manifestBytes: Buffer;
  manifest: BundleManifest;
  /** The file's size on disk (compare with manifest.bundleSize). */
  fileSize: number;
}

async function readAt(fh: FileHandle, length: number, position: number, fileSize: number): Promise<Buffer> {
  const b = Buffer.alloc(length);
  const { bytesRead } = await fh.read(b, 0, length, position);
  if (bytesRead < length) {
    throw new BundleError('truncated', `the file ends at byte ${fileSize}, inside the bundle header (which needs ${position + length} bytes)`);
  }
  return b;
}

/** Reads a bundle file's header (bounded like the verifier's) through an open handle. */
export async function readHeaderFrom(fh: FileHandle): Promise<BundleFileHeader> {
  const fileSize = (await fh.stat()).size;
  const preamble = await readAt(fh, PREAMBLE_LENGTH, 0, fileSize);
  const { manifestLength, formatVersion } = decodePreamble(preamble);
  const signatures = decodeSignatureArea(await readAt(fh, SIGNATURE_AREA_LENGTH, PREAMBLE_LENGTH, fileSize));
  const manifestBytes = await readAt(fh, manifestLength, MANIFEST_OFFSET, fileSize);
  return { preamble, signatures, manifestBytes, manifest: parseManifest(manifestBytes, formatVersion), fileSize };
}

export async function readBundleFileHeader(path: string): Promise<BundleFileHeader> {
  const fh = await open(path, 'r');
  try {
    return await readHeaderFrom(fh);
  } finally {
    await fh.close();
  }
}
