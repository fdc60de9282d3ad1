// The install benchmark: the physical stages, the best plain-tools pipeline and piota's daemon path,
/* global URL */
// interleaved round by round over the same bundle, server and slot; medians and ratios.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hasTool, makeBundle, makeSlot, serveDirectory, writeRandomImage } from './fixture.js';
import { measure, median } from './measure.js';

const MiB = 1024 * 1024;
const child = fileURLToPath(new URL('./install-child.js', import.meta.url));

/** One size: every method `rounds` times, interleaved. Returns { rows, samples, slotKind, bundleSize }. */
/** The node options systemd/piota.service runs the daemon with (its NODE_OPTIONS). */
const DAEMON_NODE_FLAGS = ['--max-semi-space-size=1'];

export async function benchInstall(sizeMiB, rounds, log, only = null) {
  const dir = await mkdtemp(join(tmpdir(), 'piota-bench-install-'));
  let server;
  let slot;
  try {
    const image = join(dir, 'image');
    await writeRandomImage(image, sizeMiB * MiB);
    const { size: bundleSize } = await makeBundle(dir, image, 'none');
    server = await serveDirectory(dir);
    slot = await makeSlot(dir, sizeMiB * MiB + 16 * MiB);
    const url = `https://localhost:${server.port}/fw-none.piota`;
    const curl = `curl -sS --fail --cacert ${server.ca} ${url}`;
    const dd = `dd of=${slot.path} bs=4M iflag=fullblock oflag=direct conv=fsync,notrunc status=none`;
    const tools = ['curl', 'openssl', 'dd'].every(hasTool);
    const methods = [
      tools && { name: 'TLS transfer only (curl → /dev/null)', key: 'tls', argv: ['sh', '-c', `${curl} > /dev/null`] },
      tools && { name: 'sha256 of the image (openssl)', key: 'sha256', argv: ['openssl', 'dgst', '-sha256', image] },
      tools && { name: 'disk only (dd oflag=direct)', key: 'disk', argv: ['sh', '-c', `dd if=${image} ${dd.slice(3)}`] },
      tools && { name: '`curl \\| tee >(openssl dgst -sha256) \\| dd oflag=direct`', key: 'pipeline', argv: ['bash', '-c', `${curl} | tee >(openssl dgst -sha256 > /dev/null) | ${dd}`] },
      { name: "piota's daemon path (HTTPS → verifier → slot, synced)", key: 'piota', argv: [process.execPath, ...DAEMON_NODE_FLAGS, child, url, server.ca, join(dir, 'trusted.pub'), slot.path] },
      { name: "piota's daemon path + read-back", key: 'piotaReadback', argv: [process.execPath, ...DAEMON_NODE_FLAGS, child, url, server.ca, join(dir, 'trusted.pub'), slot.path, '--readback'] },
    ].filter((m) => m && (!only || only.has(m.key)));
    const results = new Map(methods.map((m) => [m, []]));
    for (let r = 0; r < rounds; r++) {
      for (const m of methods) {
        const got = await measure(m.argv);
        if (m.key?.startsWith('piota')) Object.assign(got, JSON.parse(got.stdout.trim().split('\n').pop()));
        results.get(m).push(got);
        log(`  ${sizeMiB} MiB round ${r + 1}: ${m.name}: ${got.wall.toFixed(2)} s`);
      }
    }
    const rows = methods.map((m) => {
      const runs = results.get(m);
      const row = { name: m.name, key: m.key, wall: median(runs.map((x) => x.wall)), cpu: median(runs.map((x) => x.cpu)), rssMiB: median(runs.map((x) => x.rssMiB)) };
      if (m.key?.startsWith('piota')) {
        row.idleRssMiB = median(runs.map((x) => x.idleRssMiB));
        row.growthMiB = median(runs.map((x) => x.peakRssMiB - x.idleRssMiB));
        row.readbackS = median(runs.map((x) => x.readbackS ?? NaN));
      }
      return row;
    });
    const piotaRuns = results.get(methods.find((m) => m.key === 'piota'));
    const typical = [...piotaRuns].sort((a, b) => a.wall - b.wall)[Math.floor(piotaRuns.length / 2)];
    return { sizeMiB, bundleSize, slotKind: slot.kind, rows, samples: typical.samples };
  } finally {
    server?.stop();
    slot?.release();
    await rm(dir, { recursive: true, force: true });
  }
}
