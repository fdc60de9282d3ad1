// The in-process fleet's memory and time: `piota simulate --count N` (its own process, the hub
// emulator in another) from start to every device connected, its RSS idle, then one release
// written in every device's desired properties and the time until every device reports
// applyComplete at the new version, with the peak RSS of the fleet process over the whole run.
// Run with `npm run bench:fleet -- N` (default 500). Prints one JSON line.
import process from 'node:process';
import { Buffer } from 'node:buffer';
import { setTimeout as sleep } from 'node:timers/promises';
import { setInterval, clearInterval } from 'node:timers';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:https';
import { join } from 'node:path';
import { URL, fileURLToPath } from 'node:url';
const repo = fileURLToPath(new URL('..', import.meta.url));
const { serviceRegistry } = await import(`${repo}/dist/service/hub-connection.js`);
const N = Number(process.argv[2] ?? 500);
const W = mkdtempSync(join(tmpdir(), 'piota-bench-fleet-'));
const piota = (...a) => execFileSync(process.execPath, [`${repo}/bin/piota.js`, ...a], { encoding: 'utf8' });
const hub = spawn(process.execPath, [`${repo}/bin/piota.js`, 'hub', 'start', '--dir', join(W, 'hub'), '--mqtt-port', '0', '--https-port', '0', '--quiet'], { stdio: 'ignore' });
while (!existsSync(join(W, 'hub', 'hub.json'))) await sleep(200);
const info = JSON.parse(readFileSync(join(W, 'hub', 'hub.json'), 'utf8'));
piota('bundle', 'keygen', '--out', join(W, 'keys'));
writeFileSync(join(W, 'rootfs'), Buffer.alloc(32 * 1024, 7));
piota('bundle', 'create', '--key', join(W, 'keys', 'piota.key'), '--version', '2.0.0', '--compatible', 'raspberrypi4-64', '--payload', `rootfs=${join(W, 'rootfs')}`, '--out', join(W, 'fw.piota'), '--compress', 'none');
const bundle = readFileSync(join(W, 'fw.piota'));
const server = createServer({ cert: readFileSync(join(W, 'hub', 'tls', 'server.pem')), key: readFileSync(join(W, 'hub', 'tls', 'server.key')) }, (req, res) => {
  res.writeHead(200, { 'content-length': bundle.length, 'accept-ranges': 'bytes' });
  res.end(bundle);
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const url = `https://localhost:${server.address().port}/fw.piota`;
const t0 = Date.now();
const sim = spawn(process.execPath, [`${repo}/bin/piota.js`, 'simulate', '--count', String(N), '--device-prefix', 'b', '--hub-dir', join(W, 'hub'), '--pubkey', join(W, 'keys', 'piota.pub'),
  '--dir', join(W, 'fleet'), '--download-ca', join(W, 'hub', 'tls', 'ca.pem'), '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'inherit'] });
let out = '';
sim.stdout.on('data', (d) => (out += d));
let peak = 0;
const rss = () => {
  const s = readFileSync(`/proc/${sim.pid}/status`, 'utf8');
  const kb = (k) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)[1]);
  peak = Math.max(peak, kb('VmHWM'));
  return kb('VmRSS');
};
const timer = setInterval(() => {
  try {
    rss();
  } catch {
    // the process is exiting
  }
}, 500);
while (!out.includes('devices b-1')) await sleep(200);
const registry = serviceRegistry({ ...info, caFile: join(W, 'hub', 'tls', 'ca.pem') });
const ids = Array.from({ length: N }, (_, i) => `b-${i + 1}`);
const twin = async (id) => (await registry.getTwin(id)).responseBody.properties.reported;
// Connected = every agent has reported its inventory.
for (const id of ids) while (!(await twin(id).catch(() => ({}))).piota) await sleep(500);
const tConnected = Date.now();
const idleRss = rss();
for (const id of ids) await registry.updateTwin(id, { properties: { desired: { piota: { firmware: { id: 'bench-1', fwPackageUri: url, version: '2.0.0' } } } } }, '*');
const tDesired = Date.now();
const left = new Set(ids);
while (left.size) {
  for (const id of [...left]) {
    const r = await twin(id).catch(() => undefined);
    if (r?.iothubDM?.firmwareUpdate?.status === 'applyComplete' && r.iothubDM.firmwareVersion === '2.0.0') left.delete(id);
  }
  if (left.size) await sleep(1000);
}
const tDone = Date.now();
rss();
console.log(JSON.stringify({ devices: N, startToConnectedS: (tConnected - t0) / 1000, idleRssMiB: Math.round(idleRss / 1024), desiredWritesS: (tDesired - tConnected) / 1000,
  desiredToAllApplyCompleteS: (tDone - tDesired) / 1000, peakRssMiB: Math.round(peak / 1024) }));
clearInterval(timer);
sim.kill('SIGTERM');
await new Promise((r) => sim.once('exit', r));
hub.kill('SIGTERM');
server.close();
rmSync(W, { recursive: true, force: true });
process.exit(0);
