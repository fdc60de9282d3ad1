// npm run bench:adaptive: adaptive against full install of the realistic release pair
// (scripts/release-pair.js; docs/adaptive-updates.md, "Measured on the release pair").
// Prints the bytes downloaded as a share of the full download, wall times of a full install, of a
// first install without a slot index (full download while the index is built) and of an adaptive
// install with the index, and the peak RSS of each, all in the same run on this machine.
import { createServer } from 'node:https';
import { clearInterval, setInterval } from 'node:timers';
import { copyFileSync, createReadStream, existsSync, statSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { releaseImage } from './release-pair.js';
import { createBundle } from '../dist/bundle/create.js';
import { generateKeyPair } from '../dist/bundle/keys.js';
import { verifyHeader, verifyChunks } from '../dist/bundle/verifier.js';
import { diffBundles } from '../dist/adaptive/bundle-diff.js';
import { buildSlotIndexInBackground, slotIndexPath, tryAdaptiveDownload } from '../dist/adaptive/adaptive-download.js';
import { ensureCertificates } from '../dist/hub-emulator/certificates.js';

const quiet = { info() {}, warn() {} };
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

async function serve(file) {
  const tls = await ensureCertificates(dir, 'localhost');
  let served = 0;
  const server = createServer({ key: tls.serverKeyPem, cert: tls.serverCertPem }, (req, res) => {
    const size = statSync(file).size;
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    const end = m && m[2] ? Number(m[2]) : size - 1;
    res.writeHead(m ? 206 : 200, { 'Content-Length': end - start + 1, 'Accept-Ranges': 'bytes', ETag: '"bench"', ...(m ? { 'Content-Range': `bytes ${start}-${end}/${size}` } : {}) });
    const body = createReadStream(file, { start, end });
    body.on('data', (d) => (served += d.length));
    body.pipe(res);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, ca: tls.caPem, url: `https://localhost:${server.address().port}/r2.piota`, served: () => served })));
}

/** A full install: the header and the chunks, verified, written to `target`. */
async function fullInstall(srv, target, chunksEnd) {
  const { request } = await import('node:https');
  const res = await new Promise((resolve, reject) =>
    request(srv.url, { ca: srv.ca, headers: { Range: `bytes=0-${chunksEnd - 1}` } }, resolve).on('error', reject).end(),
  );
  const header = await verifyHeader(res, { trustedKeys: [keys.publicKeyPem] });
  const out = await open(target, 'r+');
  for await (const chunk of verifyChunks(header, header.rest)) await out.write(chunk.data, 0, chunk.data.length, chunk.imageOffset);
  await out.sync();
  await out.close();
}

try {
  const r1 = await bundleOf(1);
  const r2 = await bundleOf(2);
  const diff = await diffBundles(r1, r2);
  console.log(`predicted (bundle diff): adaptive ${diff.adaptiveBytes} of full ${diff.fullBytes} bytes = ${(diff.share * 100).toFixed(2)} %`);

  const srv = await serve(r2);
  const running = join(dir, 'slot-A');
  const target = join(dir, 'slot-B');
  copyFileSync(releaseImage(1), running);
  copyFileSync(releaseImage(1), target); // the release before last: here release 1 again
  const header = await verifyHeader(createReadStream(r2), { trustedKeys: [keys.publicKeyPem] });
  await header.rest.return();
  const chunksEnd = header.manifest.chunksEnd;
  const size = header.manifest.payloads[0].imageSize;
  const stateDir = join(dir, 'state');

  let before = srv.served();
  const full = await measured('full install', () => fullInstall(srv, target, chunksEnd));
  const fullBytes = srv.served() - before;

  // First install without a slot index: the full download, with the index built at the same time.
  before = srv.served();
  const first = await measured('first install, no slot index (full download + index build)', () =>
    Promise.all([fullInstall(srv, target, chunksEnd), buildSlotIndexInBackground(stateDir, 'A', 'rootfs', running, size, 64 * MiB, quiet)]),
  );
  if (!existsSync(slotIndexPath(stateDir, 'A', 'rootfs'))) throw new Error('the slot index was not built');

  copyFileSync(releaseImage(1), target);
  before = srv.served();
  const out = await open(target, 'r+');
  const adaptive = await measured('adaptive install, slot index present', () =>
    tryAdaptiveDownload({
      url: srv.url, ca: srv.ca, validator: '"bench"', header, runningPartitions: { rootfs: running }, targetPartitions: { rootfs: target },
      runningSlot: 'A', targetSlot: 'B', stateDir, fromChunk: 0, logger: quiet,
      write: async (_p, offset, data) => void (await out.write(data, 0, data.length, offset)),
      afterChunk: async () => undefined,
    }),
  );
  await out.sync();
  await out.close();
  const adaptiveBytes = srv.served() - before + header.headerLength;
  if (!adaptive.result) throw new Error('the adaptive install fell back');
  console.log(`downloaded: full ${fullBytes} bytes; adaptive ${adaptiveBytes} bytes (header + index + units) = ${((adaptiveBytes / fullBytes) * 100).toFixed(2)} % of the full download`);
  console.log(`reused ${adaptive.result.bytesReused} bytes, stale blocks ${adaptive.result.staleBlocks}, chunks fetched whole ${adaptive.result.refetchedChunks}`);
  console.log(`wall time against the full install: first ${(first.ms / full.ms).toFixed(2)}x, adaptive ${(adaptive.ms / full.ms).toFixed(2)}x`);
  srv.server.close();
} finally {
  await rm(dir, { recursive: true, force: true });
}
