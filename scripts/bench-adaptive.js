// npm run bench:adaptive: adaptive against full install of the realistic release pair
// (scripts/release-pair.js; docs/adaptive-updates.md, "Measured on the release pair").
// Prints the bytes downloaded as a share of the full download, wall times of a full install, of a
// first install without a slot index (full download while the index is built) and of an adaptive
// install with the index, and the peak RSS of each, all in the same run on this machine.
// Twice: over loopback as fast as it goes (the local work decides), and over a paced link as a
// device on LTE or Wi-Fi sees it: `--link-mbps N` (default 40) is the paced link's rate in Mbit/s,
// `--only unpaced` or `--only paced` runs one of the two.
/* global AbortSignal */
import { createServer } from 'node:https';
import { clearInterval, setInterval, setTimeout } from 'node:timers';
import { performance } from 'node:perf_hooks';
import { closeSync, copyFileSync, createReadStream, existsSync, fsyncSync, openSync, rmSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { releaseImage } from './release-pair.js';
import { createBundle } from '../dist/bundle/create.js';
import { generateKeyPair } from '../dist/bundle/keys.js';
import { diffBundles } from '../dist/adaptive/bundle-diff.js';
import { slotIndexPath } from '../dist/adaptive/adaptive-download.js';
import { downloadToSlot } from '../dist/agent/download-to-slot.js';
import { openDownload } from '../dist/download/https-source.js';
import { hashPartition, openPartitionForWrite, partitionSize } from '../dist/slots/index.js';
import { ensureCertificates } from '../dist/hub-emulator/certificates.js';

const args = process.argv.slice(2);
const option = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const linkMbps = Number(option('--link-mbps', '40'));
if (!(linkMbps > 0)) throw new Error(`--link-mbps wants a rate in Mbit/s above 0, not ${option('--link-mbps')}`);
const only = option('--only', null);
if (only !== null && only !== 'unpaced' && only !== 'paced') throw new Error(`--only wants unpaced or paced, not ${only}`);

const quiet = { info() {}, warn() {}, error() {}, debug() {}, child: () => quiet };
const MiB = 1024 * 1024;
const dir = await mkdtemp(join(tmpdir(), 'piota-bench-adaptive-'));
const keys = generateKeyPair();

async function bundleOf(n) {
  const out = join(dir, `release-${n}.piota`);
  const started = Date.now();
  await createBundle({ out, version: `${n}.0`, compatible: ['pi'], formatVersion: 2, payloads: [{ name: 'rootfs', file: releaseImage(n) }], signingKeys: [keys.privateKeyPem] });
  console.log(`bundle create --format 2 release ${n}: ${((Date.now() - started) / 1000).toFixed(1)} s, ${(statSync(out).size / MiB).toFixed(1)} MiB`);
  return out;
}

/** Peak RSS while `work` runs, sampled every 20 ms. */
async function measured(label, work) {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  const before = process.memoryUsage().rss;
  const started = process.hrtime.bigint();
  try {
    const result = await work();
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    console.log(`${label}: ${(ms / 1000).toFixed(2)} s, peak RSS ${(peak / MiB).toFixed(0)} MiB (+${((peak - before) / MiB).toFixed(0)} MiB)`);
    return { ms, result };
  } finally {
    clearInterval(timer);
  }
}

/**
 * The server's side of the link: with a rate, every response's bytes leave no faster than that,
 * all responses together (one link, shared by the connections), in pieces of 16 KiB.
 */
function link() {
  let bitsPerSecond = 0;
  let freeAt = 0;
  return {
    get paced() {
      return bitsPerSecond > 0;
    },
    set mbps(v) {
      bitsPerSecond = v * 1e6;
      freeAt = 0;
    },
    /** Resolves when `bytes` more may leave. */
    async take(bytes) {
      if (!bitsPerSecond) return;
      const now = performance.now();
      freeAt = Math.max(now, freeAt) + (bytes * 8 * 1000) / bitsPerSecond;
      if (freeAt - now > 1) await new Promise((r) => setTimeout(r, freeAt - now));
    },
  };
}

async function serve(file) {
  const tls = await ensureCertificates(dir, 'localhost');
  const pace = link();
  let served = 0;
  const server = createServer({ key: tls.serverKeyPem, cert: tls.serverCertPem }, (req, res) => {
    const size = statSync(file).size;
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    const end = m && m[2] ? Number(m[2]) : size - 1;
    res.writeHead(m ? 206 : 200, { 'Content-Length': end - start + 1, 'Accept-Ranges': 'bytes', ETag: '"bench"', ...(m ? { 'Content-Range': `bytes ${start}-${end}/${size}` } : {}) });
    const paced = pace.paced;
    const body = createReadStream(file, { start, end, highWaterMark: paced ? 16 * 1024 : 64 * 1024 });
    res.on('close', () => body.destroy());
    // Counted as read for the response: at most a pipe's buffer more than the socket took (an
    // abandoned response), so the figure errs high.
    body.on('data', (d) => (served += d.length));
    if (!paced) {
      body.pipe(res);
      return;
    }
    // One piece at a time: the stream pauses until its piece has left. 'end' can come while the
    // last piece still waits for the link, so the response ends after that piece's write.
    let sent = Promise.resolve();
    body.on('data', (d) => {
      body.pause();
      sent = pace.take(d.length).then(() => void (res.write(d) ? body.resume() : res.once('drain', () => body.resume())));
    });
    body.on('end', () => void sent.then(() => res.end()));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, pace, ca: tls.caPem, url: `https://localhost:${server.address().port}/r2.piota`, served: () => served })));
}

/**
 * One install of release 2 as the daemon runs it: downloadToSlot (src/agent/download-to-slot.ts),
 * with the adaptive deps the workflow passes when `adaptive` is set, into the target slot (a file).
 */
async function install(srv, slots, adaptive) {
  const update = { updateId: 'bench', fwPackageUri: srv.url, pinnedSha256: null, expectedVersion: null, nextChunk: 0, bytesDownloaded: 0, bundle: null };
  await downloadToSlot(update, {
    open: openDownload,
    storage: { partitionSize, openForWrite: (p) => openPartitionForWrite(p), hashFromMedium: hashPartition },
    trust: { trustedKeys: [keys.publicKeyPem], model: 'pi', securityVersion: 0 },
    targetPartitions: { rootfs: slots.target },
    request: { ca: srv.ca, proxy: null },
    logger: quiet,
    checkpoint: async () => undefined,
    progress: () => undefined,
    signal: AbortSignal.timeout(30 * 60_000),
    ...(adaptive ? { adaptive: { runningPartitions: { rootfs: slots.running }, runningSlot: 'A', targetSlot: 'B', stateDir: slots.stateDir } } : {}),
  });
  return update;
}

try {
  const r1 = await bundleOf(1);
  const r2 = await bundleOf(2);
  const diff = await diffBundles(r1, r2);
  console.log(`predicted (bundle diff): adaptive ${diff.adaptiveBytes} of full ${diff.fullBytes} bytes = ${(diff.share * 100).toFixed(2)} %`);

  const srv = await serve(r2);
  const slots = { running: join(dir, 'slot-A'), target: join(dir, 'slot-B'), stateDir: join(dir, 'state') };
  // Each slot's release is on the medium before an install starts, as on a device: an install must
  // not pay for writing back the copy that set the slot up (that made the figures wander by seconds).
  const copySynced = (from, to) => {
    copyFileSync(from, to);
    const fd = openSync(to, 'r+');
    fsyncSync(fd);
    closeSync(fd);
  };
  copySynced(releaseImage(1), slots.running);
  // The target slot holds the release before last: here release 1 again.
  const resetTarget = () => copySynced(releaseImage(1), slots.target);
  const served = async (label, work) => {
    const before = srv.served();
    const m = await measured(label, work);
    return { ...m, bytes: srv.served() - before };
  };
  const indexFile = slotIndexPath(slots.stateDir, 'A', 'rootfs');

  /** Full, first (no index) and two adaptive installs at one link rate (0: unpaced); `tag` prefixes the lines. */
  async function round(mbps, tag) {
    srv.pace.mbps = mbps;
    rmSync(indexFile, { force: true });
    resetTarget();
    const full = await served(`${tag}full install (adaptive off)`, () => install(srv, slots, false));
    // First install with adaptive on but no slot index yet: the full download, the index built meanwhile.
    resetTarget();
    const first = await served(`${tag}first install, no slot index (full download; the index is built meanwhile)`, () => install(srv, slots, true));
    if (first.result.method === 'adaptive') throw new Error('the first install went adaptive without an index');
    for (let i = 0; !existsSync(indexFile); i++) {
      if (i > 1800) throw new Error('the slot index was not built within 180 s of the first install');
      await new Promise((r) => setTimeout(r, 100));
    }
    const later = [];
    for (let n = 1; n <= 2; n++) {
      resetTarget();
      const run = await served(`${tag}adaptive install ${n}, slot index present`, () => install(srv, slots, true));
      if (run.result.method !== 'adaptive') throw new Error('the install with a slot index fell back to the full download');
      later.push(run);
    }
    const a = later[0];
    console.log(`${tag}served by the server: full ${full.bytes} bytes; adaptive ${a.bytes} bytes (every request, the abandoned first GET included) = ${((a.bytes / full.bytes) * 100).toFixed(2)} % of the full download`);
    console.log(`${tag}the twin's figures for it: method ${a.result.method}, bytesFetched ${a.result.bytesFetched}, bytesReused ${a.result.bytesReused}`);
    console.log(`${tag}wall time against the full install: first ${(first.ms / full.ms).toFixed(2)}x, adaptive ${later.map((r) => (r.ms / full.ms).toFixed(2)).join('x, ')}x`);
  }

  if (only !== 'paced') await round(0, '');
  if (only !== 'unpaced') await round(linkMbps, `[${linkMbps} Mbit/s link] `);
  srv.server.close();
} finally {
  await rm(dir, { recursive: true, force: true });
}
