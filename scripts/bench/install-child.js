/* global AbortSignal */
// The daemon's install path in a process of its own, as `piota daemon` runs it: HTTPS → verifier →
// slot (synced, checkpointed), then, with --readback, the read-back from the medium that the daemon
// does before the reboot. Prints one JSON line: idle and peak RSS, and (bytes, time) samples.
// Usage: node install-child.js <url> <ca.pem> <trusted.pub> <slot> [--readback]
import { readFileSync } from 'node:fs';

const [url, caFile, pubFile, slot, flag] = process.argv.slice(2);
const rss = () => process.memoryUsage().rss;
// Idle: node, this script, and the daemon's own module graph (src/agent/daemon.ts and what it
// imports at start-up: the SDK, the logger, the HTTPS source, the slot I/O), so that the growth is
// what an install adds to a running daemon. The rest of the install path (the verifier, the hash
// worker, the adaptive modules) loads lazily at the first download, in the daemon as here.
await import('../../dist/agent/daemon.js');
const { openDownload } = await import('../../dist/download/https-source.js');
const { hashPartition, openPartitionForWrite, partitionSize } = await import('../../dist/slots/index.js');
const idleRss = rss();
const started = process.hrtime.bigint();
const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
const { downloadToSlot } = await import('../../dist/agent/download-to-slot.js');
const loadedRss = rss();
const silent = { info() {}, warn() {}, error() {}, debug() {}, child() { return silent; } };
const samples = [];
const update = { updateId: 'bench', fwPackageUri: url, pinnedSha256: null, expectedVersion: null, nextChunk: 0, bytesDownloaded: 0, bundle: null };
let checkpoints = 0;
await downloadToSlot(update, {
  open: openDownload,
  storage: { partitionSize, openForWrite: (p) => openPartitionForWrite(p), hashFromMedium: hashPartition },
  trust: { trustedKeys: [readFileSync(pubFile, 'utf8')], model: 'bench', securityVersion: 0 },
  targetPartitions: { rootfs: slot },
  request: { ca: readFileSync(caFile, 'utf8') },
  logger: silent,
  checkpoint: async () => void checkpoints++,
  progress: (u) => samples.push([seconds(), u.bytesDownloaded]),
  signal: AbortSignal.timeout(30 * 60_000),
});
const downloaded = seconds();
let readback = null;
if (flag === '--readback') {
  const payload = update.bundle.payloads[0];
  const sha = await hashPartition(slot, payload.imageSize);
  if (sha !== payload.imageSha256) throw new Error(`read-back: ${sha} is not the manifest's ${payload.imageSha256}`);
  readback = seconds() - downloaded;
}
console.log(JSON.stringify({
  idleRssMiB: idleRss / 2 ** 20,
  loadedRssMiB: loadedRss / 2 ** 20,
  peakRssMiB: process.resourceUsage().maxRSS / 1024,
  downloadS: downloaded,
  readbackS: readback,
  checkpoints,
  samples,
}));
