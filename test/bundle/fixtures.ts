import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBundle, type CreateBundleOptions } from '../../src/bundle/create.js';
import { BundleError } from '../../src/bundle/errors.js';
import { generateKeyPair, type GeneratedKeyPair } from '../../src/bundle/keys.js';
import { verifyHeader, verifyChunks, type VerifiedChunk, type VerifyPolicy } from '../../src/bundle/verifier.js';

/** Deterministic image bytes, half compressible text, half noise, so gzip has something to do. */
export function imageBytes(size: number, seed = 1): Buffer {
  const b = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = (i >> 9) % 2 === 0 ? 0x41 + (i % 23) : x & 0xff;
  }
  return b;
}

export interface Workspace {
  dir: string;
  path(name: string): string;
  remove(): Promise<void>;
}

export async function workspace(): Promise<Workspace> {
  const dir = await mkdtemp(join(tmpdir(), 'piota-bundle-test-'));
  return { dir, path: (name) => join(dir, name), remove: () => rm(dir, { recursive: true, force: true }) };
}

export interface Made {
  file: string;
  bytes: Buffer;
  images: Record<string, Buffer>;
  key: GeneratedKeyPair;
}

/** A signed bundle in `ws` with a rootfs (and optionally a boot) image of known bytes. */
export async function makeBundle(
  ws: Workspace,
  name: string,
  images: Record<string, Buffer>,
  options: Partial<CreateBundleOptions> & { key?: GeneratedKeyPair } = {},
): Promise<Made> {
  const key = options.key ?? generateKeyPair();
  const payloads = [];
  for (const [payload, data] of Object.entries(images)) {
    const file = ws.path(`${name}.${payload}.img`);
    await writeFile(file, data);
    payloads.push({ name: payload, file });
  }
  const file = ws.path(`${name}.bundle`);
  await createBundle({
    out: file,
    version: '2.0.0',
    compatible: ['raspberrypi4-64', 'raspberrypi5'],
    securityVersion: 5,
    chunkSize: 4096,
    signingKeys: [key.privateKeyPem],
    payloads,
    ...options,
  });
  return { file, bytes: await readFile(file), images, key };
}

/** Hands `bytes` out in pieces of varying sizes, as a network would. */
export async function* pieces(bytes: Buffer, sizes: number[] = [1, 7, 100, 4093, 65536]): AsyncGenerator<Buffer> {
  let at = 0;
  let i = 0;
  while (at < bytes.length) {
    const n = sizes[i++ % sizes.length];
    yield bytes.subarray(at, at + n);
    at += n;
  }
}

export const device = (key: GeneratedKeyPair, extra: Partial<VerifyPolicy> = {}) => ({
  trustedKeys: [key.publicKeyPem],
  model: 'raspberrypi4-64',
  securityVersion: 5,
  ...extra,
});

/** Verifies a whole bundle from memory; returns the chunks it yielded before finishing or failing. */
export async function verifyAll(
  bytes: Buffer,
  policy: VerifyPolicy,
): Promise<{ chunks: VerifiedChunk[]; error?: BundleError }> {
  const chunks: VerifiedChunk[] = [];
  try {
    const header = await verifyHeader(pieces(bytes), policy);
    for await (const c of verifyChunks(header, header.rest)) chunks.push(c);
    return { chunks };
  } catch (err) {
    if (!(err instanceof BundleError)) throw err;
    return { chunks, error: err };
  }
}

/** The image of `payload` put back together from verified chunks. */
export function reassemble(chunks: VerifiedChunk[], payload: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  for (const c of chunks.filter((c) => c.payload === payload)) c.data.copy(out, c.imageOffset);
  return out;
}

