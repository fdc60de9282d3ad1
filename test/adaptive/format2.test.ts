import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBundle } from '../../src/bundle/create.js';
import { decodePreamble } from '../../src/bundle/format.js';
import { generateKeyPair } from '../../src/bundle/keys.js';
import { parseManifest } from '../../src/bundle/manifest.js';
import { readBundleFileHeader } from '../../src/bundle/inspect.js';
import { verifyChunks, verifyHeader } from '../../src/bundle/verifier.js';
import { verifyBundleFile } from '../../src/bundle/verify-file.js';
import { syntheticPair } from './synthetic.js';

const keys = generateKeyPair();
const pair = syntheticPair();
let dir: string;
let bundle: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'piota-format2-'));
  await writeFile(join(dir, 'r2.img'), pair.release2);
  bundle = join(dir, 'r2.piota');
  await createBundle({ out: bundle, version: '2', compatible: ['pi'], formatVersion: 2, chunkSize: 64 * 1024, payloads: [{ name: 'rootfs', file: join(dir, 'r2.img') }], signingKeys: [keys.privateKeyPem] });
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const policy = () => ({ trustedKeys: [keys.publicKeyPem], model: 'pi' });

async function flipped(name: string, at: number): Promise<string> {
  const bytes = await readFile(bundle);
  bytes[at] ^= 0x01;
  await writeFile(join(dir, name), bytes);
  return join(dir, name);
}

describe('format 2 bundles', () => {
  it('a full install reads the header and the chunks only, and gets the image', async () => {
    const header = await verifyHeader(createReadStream(bundle), policy());
    expect(header.manifest.formatVersion).toBe(2);
    const image = Buffer.alloc(pair.release2.length);
    for await (const c of verifyChunks(header, header.rest)) c.data.copy(image, c.imageOffset);
    expect(image.equals(pair.release2)).toBe(true);
  });

  it('bundle verify checks the unit store and the block index against their signed hashes', async () => {
    await expect(verifyBundleFile(bundle, policy())).resolves.toBeTruthy();
    const { manifest } = await readBundleFileHeader(bundle);
    const b = manifest.payloads[0].blocks!;
    await expect(verifyBundleFile(await flipped('store.piota', b.storeOffset + 10), policy())).rejects.toMatchObject({ code: 'hashMismatch', message: expect.stringContaining('unit store of rootfs') });
    await expect(verifyBundleFile(await flipped('index.piota', b.offset + 10), policy())).rejects.toMatchObject({ code: 'hashMismatch', message: expect.stringContaining('block index of rootfs') });
    const longer = join(dir, 'longer.piota');
    await writeFile(longer, Buffer.concat([await readFile(bundle), Buffer.from('x')]));
    await expect(verifyBundleFile(longer, policy())).rejects.toMatchObject({ code: 'malformed' });
  });

  it('a format version this agent does not know is refused from the preamble alone: unsupportedFormat', async () => {
    const preamble = (await readFile(bundle)).subarray(0, 16);
    preamble.writeUInt32BE(3, 8);
    expect(() => decodePreamble(preamble)).toThrow(expect.objectContaining({ code: 'unsupportedFormat', message: expect.stringContaining('versions 1 and 2') }));
  });

  it("format 2's fields are malformed in a format 1 manifest, and required in format 2", async () => {
    const { manifestBytes } = await readBundleFileHeader(bundle);
    expect(() => parseManifest(manifestBytes, 1)).toThrow(expect.objectContaining({ code: 'malformed', message: expect.stringContaining("unknown field 'blockSize'") }));
    const stored = JSON.parse(manifestBytes.toString('utf8'));
    delete stored.payloads[0].index;
    expect(() => parseManifest(Buffer.from(JSON.stringify(stored)), 2)).toThrow(expect.objectContaining({ code: 'malformed', message: expect.stringContaining('payloads[0].index must be an object') }));
  });
});
