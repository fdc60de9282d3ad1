#!/usr/bin/env node
// `npm run bench:rollout`: piota rollout over N simulated Pis (default 500, the in-process fleet)
// against the hub emulator: the wall time of a 4-wave rollout (1 %, 10 %, 50 %, 100 %) and of each
// wave, how many devices were exposed when a halt fired (a second fleet with 20 % failing trials),
// and the hub's request rates beside IoT Hub's S1 and S3 limits. The controller is the real CLI
// (node bin/piota.js rollout start), in its own process, as an operator runs it.
// Usage: npm run bench:rollout [-- --count 500] [-- --tier S3] [-- --skip-halt]
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { URL, fileURLToPath } from 'node:url';
import { setTimeout } from 'node:timers';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import process from 'node:process';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '500' },
    tier: { type: 'string', default: 'S3' },
    'skip-halt': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
  },
});
const count = Number(values.count);
if (!Number.isInteger(count) || count < 10) {
  console.error('bench-rollout: --count takes a whole number of at least 10');
  process.exit(2);
}
const dist = (p) => new URL(`../dist/${p}`, import.meta.url).href;
const { startHub } = await import(dist('hub-emulator/index.js'));
const { tierLimits } = await import(dist('hub-emulator/throttle.js'));
const { startFleet } = await import(dist('simulator/fleet/fleet.js'));
const { createBundle } = await import(dist('bundle/create.js'));
const { generateKeyPair } = await import(dist('bundle/keys.js'));
const { serveFiles } = await import(dist('demo/bundle-server.js'));
const bin = fileURLToPath(new URL('../bin/piota.js', import.meta.url));
const log = (line) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${line}`);

const dir = await mkdtemp(join(tmpdir(), 'piota-bench-rollout-'));
const hubDir = join(dir, 'hub');
// The hub without a tier: nothing is refused, every request is counted, and the rates are set
// beside each tier's limits below. The controller paces itself for --tier.
const hub = await startHub({ dir: hubDir, mqttPort: 0, httpsPort: 0 });
const key = generateKeyPair();
await writeFile(join(dir, 'piota.pub'), key.publicKeyPem);
await writeFile(join(dir, 'rootfs'), randomBytes(32 * 1024));
await createBundle({ out: join(dir, 'fw-2.0.0.piota'), version: '2.0.0', compatible: ['raspberrypi4-64'], payloads: [{ name: 'rootfs', file: join(dir, 'rootfs') }], chunkSize: 16 * 1024, compression: 'none', signingKeys: [key.privateKeyPem] });
const tls = { key: await readFile(join(hubDir, 'tls', 'server.key'), 'utf8'), cert: await readFile(join(hubDir, 'tls', 'server.pem'), 'utf8') };
const files = await serveFiles([join(dir, 'fw-2.0.0.piota')], tls);
const uri = files.url('fw-2.0.0.piota');

function cli(args) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => resolve({ code, out, err }));
  });
}

async function fleetOf(prefix, extra) {
  const t = Date.now();
  const fleet = await startFleet({
    dir: join(dir, prefix), hubDir, count, prefix, pubkey: join(dir, 'piota.pub'), downloadCa: hub.info.caFile,
    tags: { ring: prefix }, seed: 5, logLevel: 'warn', watchdogMs: 300, daemonConfig: { trialTimeoutSeconds: 30, progressIntervalSeconds: 2 }, ...extra,
  });
  const online = fleet.devices.filter((d) => d.role !== 'offline').length;
  while (hub.connectedDevices().filter((id) => id.startsWith(`${prefix}-`)).length < online) await new Promise((r) => setTimeout(r, 500));
  log(`fleet ${prefix}: ${count} devices up and connected in ${((Date.now() - t) / 1000).toFixed(1)} s; rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`);
  return fleet;
}

async function rollout(name, waves, haltRate, minFailed) {
  const t = Date.now();
  const r = await cli(['rollout', 'start', name, '--uri', uri, '--version', '2.0.0', '--target', `tags.ring = '${name}'`, '--waves', waves, '--halt-failure-rate', haltRate, '--halt-min-failed', String(minFailed), '--wave-timeout', '10m', '--connect-timeout', '5s', '--apply-now', '--hub-dir', hubDir, '--tier', values.tier, '--poll', '1s']);
  const wall = (Date.now() - t) / 1000;
  const s = await cli(['rollout', 'status', name, '--json', '--hub-dir', hubDir, '--tier', values.tier]);
  if (s.code !== 0) throw new Error(`status ${name}: ${s.err}`);
  return { wall, exit: r.code, status: JSON.parse(s.out), out: r.out + r.err };
}

const lines = [];
const statsBefore = hub.stats();
const good = await fleetOf('wave', {});
const statsAtStart = hub.stats();
const a = await rollout('wave', '1%,10%,50%,100%', '5%', 5);
const statsAfter = hub.stats();
if (a.exit !== 0) log(`rollout wave exited ${a.exit}:\n${a.out}`);
lines.push(`4-wave rollout (1%,10%,50%,100%) of ${count} devices, controller --tier ${values.tier}: ${a.status.state} in ${a.wall.toFixed(1)} s; ${a.status.totals.succeeded} succeeded, ${a.status.totals.failed} failed, ${a.status.totals.offline} offline`);
for (const w of a.status.waves) {
  const secs = w.startedAt && w.endedAt ? ((Date.parse(w.endedAt) - Date.parse(w.startedAt)) / 1000).toFixed(1) : '-';
  lines.push(`  wave ${w.wave}: ${w.devices} devices, ${secs} s from its job to its last result`);
}
await good.stop();

// The request rates of the rollout alone: counts between the fleet being up and the rollout's end.
const span = a.wall;
lines.push('', `hub requests during that rollout (${span.toFixed(0)} s), against IoT Hub's limits for one unit:`);
lines.push('  category              requests  mean/s   peak/s   S1 limit/s  S3 limit/s');
const s1 = tierLimits('S1', 1);
const s3 = tierLimits('S3', 1);
for (const [cat, after] of Object.entries(statsAfter.categories)) {
  const before = statsAtStart.categories[cat];
  const n = after.admitted - before.admitted;
  if (n === 0) continue;
  lines.push(`  ${cat.padEnd(20)} ${String(n).padStart(9)}  ${(n / span).toFixed(2).padStart(6)}  ${String(after.peakPerSecond).padStart(7)}  ${s1[cat].toFixed(2).padStart(10)}  ${s3[cat].toFixed(2).padStart(10)}`);
}
void statsBefore;

if (!values['skip-halt']) {
  const bad = await fleetOf('halt', { failTrialRatio: 0.2 });
  const h = await rollout('halt', '1%,10%,50%,100%', '5%', 5);
  const started = h.status.waves.filter((w) => w.stage !== 'pending');
  lines.push('', `halting rollout over ${count} devices with 20 % failing trials (--halt-failure-rate 5% --halt-min-failed 5): ${h.status.state} in ${h.wall.toFixed(1)} s`);
  lines.push(`  devices exposed (given the update) when it halted: ${h.status.totals.devices} of ${count}, in ${started.length} wave(s); ${h.status.totals.failed} failed, ${h.status.totals.succeeded} succeeded, ${h.status.totals.running} still running`);
  lines.push(`  reason: ${h.status.reason}`);
  await bad.stop();
}
await files.close();
await hub.close();
console.log(lines.join('\n'));
if (values.keep) console.error(`kept ${dir}`);
else await rm(dir, { recursive: true, force: true });
