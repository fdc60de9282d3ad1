import { gunzip, gzip } from 'node:zlib';
import { promisify } from 'node:util';
import { BundleError } from './errors.js';

/**
 * The codecs a chunk's stored bytes may use. Each chunk is compressed on its own, so a chunk can be
 * verified (its stored sha256) and expanded without any other chunk.
 */
export const COMPRESSIONS = ['none', 'gzip'] as const;
export type Compression = (typeof COMPRESSIONS)[number];

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

export function isCompression(value: unknown): value is Compression {
  return (COMPRESSIONS as readonly unknown[]).includes(value);
}

/** The stored form of one chunk of image bytes (`data` itself for 'none'). Runs on libuv's pool for gzip. */
export async function compressChunk(c: Compression, data: Buffer): Promise<Buffer> {
  switch (c) {
    case 'none':
      return data;
    case 'gzip':
      return gzipAsync(data);
  }
}

/**
 * The image bytes of one stored chunk, which must be exactly `imageSize` bytes. The codec is never
 * allowed to produce more than `imageSize` bytes: a chunk that would (a decompression bomb) is
 * refused with BundleError 'malformed' before its output is held.
 */
export async function expandChunk(c: Compression, stored: Buffer, imageSize: number): Promise<Buffer> {
  let data: Buffer;
  switch (c) {
    case 'none':
      data = stored;
      break;
    case 'gzip':
      try {
        data = await gunzipAsync(stored, { maxOutputLength: Math.max(1, imageSize) });
      } catch (err) {
        throw new BundleError('malformed', `its gzip data does not expand to ${imageSize} bytes (${(err as Error).message})`);
      }
      break;
    default:
      throw new BundleError('unsupportedFormat', `unknown compression ${JSON.stringify(c)}; this agent knows ${COMPRESSIONS.join(', ')}`);
  }
  if (data.length !== imageSize) throw new BundleError('malformed', `expands to ${data.length} bytes, the manifest says ${imageSize}`);
  return data;
}
