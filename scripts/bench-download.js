#!/usr/bin/env node
// The daemon's download path (HTTPS → bundle verifier → slot partition, with syncs and checkpoints)
// against a baseline measured in the same run: the same file over the same HTTPS server, hashed and
// written to a file, nothing else. The ratio says what verification and slot handling cost.
// Usage: npm run bench:download [-- --size MiB] [-- --rounds N] [-- --compression gzip|none]   (needs `npm run build`)
import { Buffer } from 'node:buffer';
import { createHash, randomBytes } from 'node:crypto';
import { setInterval, clearInterval } from 'node:timers';
/* global AbortSignal */
import { mkdtemp, open, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { createBundle, generateKeyPair } from '../dist/bundle/index.js';
import { ensureCertificates } from '../dist/hub-emulator/certificates.js';
import { openDownload } from '../dist/download/https-source.js';
import { downloadToSlot } from '../dist/agent/download-to-slot.js';
import { hashPartition, openPartitionForWrite, partitionSize } from '../dist/slots/index.js';
import { bestOf } from './bench-timing.js';

const { values } = parseArgs({ options: { size: { type: 'string', default: '128' }, rounds: { type: 'string', default: '3' }, compression: { type: 'string', default: 'gzip' } } });
const MiB = 1024 * 1024;
const size = Number(values.size) * MiB;
const rounds = Number(values.rounds);

const dir = await mkdtemp(join(tmpdir(), 'piota-bench-dl-'));
let server;
try {
  const fh = await open(join(dir, 'image'), 'w');
  const text = Buffer.alloc(MiB / 2, 'piota firmware download benchmark\n');
  for (let at = 0; at < size; at += MiB) await fh.write(Buffer.concat([randomBytes(MiB / 2), text]));
  await fh.close();
  const key = generateKeyPair();
  const bundle = join(dir, 'fw.piota');
  await createBundle({ out: bundle, version: '1', compatible: ['bench'], payloads: [{ name: 'rootfs', file: join(dir, 'image') }], compression: values.compression, signingKeys: [key.privateKeyPem] });
  const bundleSize = (await stat(bundle)).size;

  const certs = await ensureCertificates(join(dir, 'tls'), 'localhost');
  // The server runs in its own process, as a real one would: its TLS work is not charged to the device.
  await writeFile(join(dir, 'server.key'), certs.serverKeyPem);
  await writeFile(join(dir, 'server.pem'), certs.serverCertPem);
  server = spawn(process.execPath, ['--input-type=module', '-e', `
    import { createServer } from 'node:https';
    import { createReadStream, readFileSync, statSync } from 'node:fs';
    const dir = ${JSON.stringify(dir)};
    const size = statSync(dir + '/fw.piota').size;
    const s = createServer({ key: readFileSync(dir + '/server.key'), cert: readFileSync(dir + '/server.pem') }, (req, res) => {
      res.writeHead(200, { 'Content-Length': size });
      createReadStream(dir + '/fw.piota', { highWaterMark: 256 * 1024 }).pipe(res);
    });
    s.listen(0, '127.0.0.1', () => console.log(s.address().port));
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve) => server.stdout.once('data', (d) => resolve(Number(String(d).trim()))));
  const url = `https://localhost:${port}/fw.piota`;
  const slot = join(dir, 'slot-rootfs');
  await (await open(slot, 'w')).close();
  await truncate(slot, size + 64 * MiB);

  // What `curl -o` does: the body streamed into a file, hashed on the way, synced at the end.
  const baseline = async () => {
    const r = await openDownload({ url, ca: certs.caPem });
    const h = createHash('sha256');
    const path = join(dir, 'baseline');
    await pipeline(r.body, async function* (source) {
      for await (const piece of source) {
        h.update(piece);
        yield piece;
      }
    }, createWriteStream(path, { highWaterMark: 1024 * 1024 }));
    const out = await open(path, 'r+');
    await out.sync();
    await out.close();
    return h.digest('hex');
  };
  let peakGrowth = 0;
  const daemonPath = async () => {
    const update = { updateId: 'bench', fwPackageUri: url, pinnedSha256: null, expectedVersion: null, nextChunk: 0, bytesDownloaded: 0, bundle: null };
    const rssBefore = process.memoryUsage().rss;
    const timer = setInterval(() => (peakGrowth = Math.max(peakGrowth, process.memoryUsage().rss - rssBefore)), 20);
    try {
      await downloadToSlot(update, {
        storage: { partitionSize, openForWrite: (p) => openPartitionForWrite(p), hashFromMedium: hashPartition },
        trust: { trustedKeys: [key.publicKeyPem], model: 'bench', securityVersion: 0 },
        targetPartitions: { rootfs: slot },
        downloadCa: certs.caPem,
        logger: pino({ level: 'silent' }),
        checkpoint: async () => undefined,
        progress: () => undefined,
        signal: AbortSignal.timeout(10 * 60_000),
      });
    } finally {
      clearInterval(timer);
    }
  };
  const best = (fn) => bestOf(rounds, fn);
  const tBase = await best(baseline);
  const tDaemon = await best(daemonPath);
  const mbps = (s) => (bundleSize / MiB / s).toFixed(0);
  console.log(`download benchmark: ${size / MiB} MiB image in a ${(bundleSize / MiB).toFixed(0)} MiB ${values.compression} bundle over HTTPS on loopback, best of ${rounds}, node ${process.version}`);
  console.log(`  baseline (HTTPS → sha256 → file, like curl -o):   ${tBase.toFixed(2)} s  ${mbps(tBase)} MiB/s`);
  console.log(`  daemon path (HTTPS → verifier → slot, synced):    ${tDaemon.toFixed(2)} s  ${mbps(tDaemon)} MiB/s`);
  console.log(`  ratio daemon/baseline throughput: ${(tBase / tDaemon).toFixed(2)}; peak RSS growth in the daemon path: ${(peakGrowth / MiB).toFixed(0)} MiB`);
} finally {
  server?.kill();
  await rm(dir, { recursive: true, force: true });
}
