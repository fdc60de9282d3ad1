// The hub-facing figures, through the emulator and the real daemon of a simulated Pi:
// - firmwareUpdate answer time: 200 calls one at a time while an update is in progress,
//   alternating an invalid payload (answered 400) and a repeat of the update (answered 200);
// - the time from the trial boot's hub connection to applyComplete in the twin.
/* global URL, performance, setTimeout */
import { spawn } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import deviceSdk from 'azure-iot-device';
import mqttTransport from 'azure-iot-device-mqtt';
import { addDevice, startHub } from '../../dist/hub-emulator/index.js';
import { HubCore } from '../../dist/hub-emulator/hub-core.js';
import { serviceClient, serviceRegistry } from '../../dist/service/hub-connection.js';
import { createBundle, generateKeyPair } from '../../dist/bundle/index.js';
import { serveDirectory, writeRandomImage } from './fixture.js';
import { percentile } from './measure.js';

const bin = fileURLToPath(new URL('../../bin/piota.js', import.meta.url));
const CALLS = 200;

/** Hub-side timestamps: every device connection, and when each firmwareUpdate status reached the twin. */
function watchHub() {
  const attaches = [];
  const statuses = [];
  const attach = HubCore.prototype.attach;
  HubCore.prototype.attach = function (deviceId, link) {
    attaches.push(performance.now());
    return attach.call(this, deviceId, link);
  };
  const reportedPatch = HubCore.prototype.reportedPatch;
  HubCore.prototype.reportedPatch = async function (deviceId, patch) {
    const version = await reportedPatch.call(this, deviceId, patch);
    const status = patch?.iothubDM?.firmwareUpdate?.status;
    if (status) statuses.push({ status, at: performance.now() });
    return version;
  };
  return { attaches, statuses };
}

async function until(what, check, timeoutMs) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const got = await check();
    if (got) return got;
    if (Date.now() > end) throw new Error(`bench: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function benchHub(log) {
  const dir = await mkdtemp(join(tmpdir(), 'piota-bench-hub-'));
  const seen = watchHub();
  const hub = await startHub({ dir: join(dir, 'hub'), mqttPort: 0, httpsPort: 0 });
  let server;
  let sim;
  let echo;
  try {
    const files = join(dir, 'files');
    await mkdir(files);
    const key = generateKeyPair();
    await writeFile(join(dir, 'piota.pub'), key.publicKeyPem);
    const bundle = async (name, version, mib) => {
      await writeRandomImage(join(files, `${name}.img`), mib * 2 ** 20);
      await createBundle({ out: join(files, name), version, compatible: ['raspberrypi4-64'], payloads: [{ name: 'rootfs', file: join(files, `${name}.img`) }], compression: 'none', chunkSize: 256 * 1024, signingKeys: [key.privateKeyPem] });
    };
    await bundle('slow', '1.0.1', 4);
    await bundle('fast', '1.0.2', 4);
    server = await serveDirectory(files);
    await writeFile(join(dir, 'extra.json'), JSON.stringify({ progressIntervalSeconds: 1 }));
    sim = spawn(process.execPath, [bin, 'simulate', '--dir', join(dir, 'pi'), '--hub-dir', join(dir, 'hub'), '--device', 'bench-pi', '--pubkey', join(dir, 'piota.pub'),
      '--download-ca', server.ca, '--slot-size', '8M', '--version', '1.0.0', '--daemon-config', join(dir, 'extra.json')],
      // The node options systemd/piota.service gives the daemon (the simulator passes its environment on).
      { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, NODE_OPTIONS: '--max-semi-space-size=1' } });
    const registry = serviceRegistry(hub.info);
    const client = serviceClient(hub.info);
    const reported = async () => (await registry.getTwin('bench-pi')).responseBody.properties.reported;
    await until('the simulated Pi to connect', async () => hub.connectedDevices().includes('bench-pi') && (await reported()).piota?.bootedSlot !== undefined, 60_000);
    // The real daemon's memory: connected and idle, then at its peak while an update downloads.
    const daemon = daemonProcess(sim.pid);
    const idleRssMiB = procStatusMiB(daemon, 'VmRSS');
    const invoke = async (payload) => (await client.invokeDeviceMethod('bench-pi', { methodName: 'firmwareUpdate', payload, responseTimeoutInSeconds: 30 })).result;
    // The baseline: a device that answers at once (the SDK's own sample), through the same hub.
    echo = deviceSdk.Client.fromConnectionString(await addDevice(join(dir, 'hub'), 'bench-echo'), mqttTransport.Mqtt);
    await echo.setOptions({ ca: readFileSync(hub.info.caFile, 'utf8') });
    await echo.open();
    echo.onDeviceMethod('echo', (_req, res) => res.send(200, {}, () => undefined));
    const echoTimes = [];

    // An update held in progress by a slow server (4 MiB at 64 KiB/s: about a minute).
    const slowUri = `https://localhost:${server.port}/slow?bps=65536`;
    const first = await invoke({ fwPackageUri: slowUri });
    if (first.status !== 200) throw new Error(`bench: the first firmwareUpdate answered ${first.status}`);
    const times = [];
    for (let i = 0; i < CALLS; i++) {
      const bad = i % 2 === 0;
      const e = performance.now();
      await client.invokeDeviceMethod('bench-echo', { methodName: 'echo', payload: null, responseTimeoutInSeconds: 30 });
      echoTimes.push(performance.now() - e);
      const t = performance.now();
      const answer = await invoke(bad ? {} : { fwPackageUri: slowUri });
      times.push(performance.now() - t);
      if (answer.status !== (bad ? 400 : 200)) throw new Error(`bench: call ${i} answered ${answer.status}, expected ${bad ? 400 : 200}`);
    }
    const p50Ms = percentile(times, 50);
    const p99Ms = percentile(times, 99);
    const echo50 = percentile(echoTimes, 50);
    const echo99 = percentile(echoTimes, 99);
    log(`  firmwareUpdate: p50 ${p50Ms.toFixed(1)} ms, p99 ${p99Ms.toFixed(1)} ms over ${CALLS} calls; an instant answer: p50 ${echo50.toFixed(1)} ms, p99 ${echo99.toFixed(1)} ms`);

    const peakRssMiB = procStatusMiB(daemon, 'VmHWM');
    log(`  the daemon: ${idleRssMiB.toFixed(1)} MiB idle (connected, no update), ${peakRssMiB.toFixed(1)} MiB at its peak during the update and the calls`);

    // Cancel it, then a fast update through the trial boot to applyComplete.
    await client.invokeDeviceMethod('bench-pi', { methodName: 'firmwareUpdateCancel', payload: null, responseTimeoutInSeconds: 30 });
    await until('the cancelled update to end', async () => (await reported()).iothubDM?.firmwareUpdate?.status === 'downloadFailed', 60_000);
    const fast = await invoke({ fwPackageUri: `https://localhost:${server.port}/fast` });
    if (fast.status !== 200) throw new Error(`bench: the second firmwareUpdate answered ${fast.status}`);
    const done = await until('applyComplete', async () => seen.statuses.find((s) => s.status === 'applyComplete' || s.status === 'applyFailed'), 120_000);
    if (done.status !== 'applyComplete') throw new Error('bench: the update ended applyFailed');
    const trialConnect = seen.attaches.filter((t) => t < done.at).pop();
    const applyS = (done.at - trialConnect) / 1000;
    log(`  applyComplete ${applyS.toFixed(2)} s after the trial boot's hub connection`);
    const markdown = [
      '### Through the hub emulator (a simulated Pi, the real daemon, the service SDK)',
      '',
      '| figure | value |',
      '|---|---|',
      `| firmwareUpdate answer time, ${CALLS} calls one at a time during an update (invalid → 400, repeat → 200) | p50 ${p50Ms.toFixed(1)} ms, p99 ${p99Ms.toFixed(1)} ms |`,
      `| baseline: a method answered at once by the SDK's device client, interleaved with those calls | p50 ${echo50.toFixed(1)} ms, p99 ${echo99.toFixed(1)} ms |`,
      `| trial boot's hub connection → applyComplete in the twin | ${applyS.toFixed(2)} s |`,
      `| the daemon's RSS: idle (connected, no update) → peak during that update and the calls | ${idleRssMiB.toFixed(1)} → ${peakRssMiB.toFixed(1)} MiB |`,
    ].join('\n');
    return { p50Ms, p99Ms, applyS, idleRssMiB, peakRssMiB, markdown };
  } finally {
    await echo?.close().catch(() => undefined);
    if (sim && sim.exitCode === null) {
      sim.kill('SIGTERM');
      await new Promise((r) => sim.once('exit', r));
    }
    server?.stop();
    await hub.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

/** The `piota daemon` process that `piota simulate` (pid) runs for the current boot. */
function daemonProcess(simPid) {
  const children = readFileSync(`/proc/${simPid}/task/${simPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
  const pid = children.find((c) => readFileSync(`/proc/${c}/cmdline`, 'utf8').split('\0').includes('daemon'));
  if (!pid) throw new Error(`bench: no daemon process under piota simulate (${simPid})`);
  return pid;
}

/** A figure of /proc/PID/status (VmRSS, VmHWM), in MiB. */
function procStatusMiB(pid, field) {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`bench: no ${field} in /proc/${pid}/status`);
  return Number(m[1]) / 1024;
}
