#!/usr/bin/env node
// Verifier throughput against plain sha256 over the same bundle bytes, measured in the same run
// on the same machine, so the ratio means something on a loaded laptop and on a Pi alike.
// Usage: npm run bench:bundle [-- --size MiB] [-- --rounds N]   (needs `npm run build`)
import { Buffer } from 'node:buffer';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createBundle, generateKeyPair, readVerifiedHeader, verifyChunks } from '../dist/bundle/index.js';
import { bestOf } from './bench-timing.js';

const { values } = parseArgs({ options: { size: { type: 'string', default: '128' }, rounds: { type: 'string', default: '3' } } });
const MiB = 1024 * 1024;
const size = Number(values.size) * MiB;
const rounds = Number(values.rounds);
const READ = { highWaterMark: 256 * 1024 };

/** Half noise, half repetitive text per MiB: roughly what a root filesystem image compresses like. */
async function writeImage(path) {
  const fh = await open(path, 'w');
  const text = Buffer.alloc(MiB / 2, 'piota firmware bundle benchmark block\n');
  for (let at = 0; at < size; at += MiB) await fh.write(Buffer.concat([randomBytes(MiB / 2), text]));
  await fh.close();
}

const best = (fn) => bestOf(rounds, fn);

async function sha256File(path) {
  const h = createHash('sha256');
  for await (const piece of createReadStream(path, READ)) h.update(piece);
  return h.digest('hex');
}

async function verifyFile(path, trust) {
  const header = await readVerifiedHeader(createReadStream(path, READ), trust);
  let image = 0;
  for await (const chunk of verifyChunks(header, header.rest)) image += chunk.data.length;
  return { bundle: header.bundleSize, image };
}

const mbps = (bytes, seconds) => (bytes / MiB / seconds).toFixed(0);
const dir = await mkdtemp(join(tmpdir(), 'piota-bench-'));
try {
  const key = generateKeyPair();
  const trust = { trustedKeys: [key.publicKeyPem], model: 'bench', securityVersion: 0 };
  await writeImage(join(dir, 'image'));
  console.log(`bundle verifier benchmark: ${size / MiB} MiB image, 4 MiB chunks, best of ${rounds} rounds, node ${process.version}`);
  for (const compression of ['none', 'gzip']) {
    const file = join(dir, `${compression}.bundle`);
    await createBundle({ out: file, version: '1', compatible: ['bench'], payloads: [{ name: 'rootfs', file: join(dir, 'image') }], compression, signingKeys: [key.privateKeyPem] });
    const { bundle, image } = await verifyFile(file, trust); // warms the page cache, checks it verifies
    const baseline = await best(() => sha256File(file));
    const verifier = await best(() => verifyFile(file, trust));
    console.log(
      `${compression.padEnd(4)}: bundle ${mbps(bundle, 1)} MiB; sha256 baseline ${mbps(bundle, baseline)} MiB/s; ` +
        `verifier ${mbps(bundle, verifier)} MiB/s of bundle (${mbps(image, verifier)} MiB/s of image); ` +
        `ratio verifier/sha256 ${(baseline / verifier).toFixed(2)}`,
    );
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
