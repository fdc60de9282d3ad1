import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createBundle } from '../bundle/create.js';
import { generateKeyPair } from '../bundle/keys.js';
import { ensureCertificates } from '../hub-emulator/certificates.js';
import { startHub, type RunningHub } from '../hub-emulator/index.js';
import { followPrinter } from '../service/follow-printer.js';
import { triggerAndFollow, type FollowEvent } from '../service/follow-update.js';
import { iothubService } from '../service/iothub-service.js';
import { serveFiles, type BundleServer } from './bundle-server.js';
import { writeDemoImage } from './demo-image.js';
import { narrateDaemonLog } from './narration.js';

const piotaBin = fileURLToPath(new URL('../../bin/piota.js', import.meta.url));

export interface DemoOptions {
  write(text: string): void;
  /** Keep the temporary directory (for a look around afterwards). */
  keep?: boolean;
  signal?: AbortSignal;
}

/**
 * The whole loop on one machine, nothing to configure: a hub emulator, a signing key and a signed
 * bundle (1.0.1), an HTTPS server for it, a simulated Pi at 1.0.0 running the real daemon, and the
 * same trigger code as `piota trigger`, followed through the reboot to applyComplete.
 * Resolves to trigger's exit code; leaves no process or directory behind.
 */
export async function runDemo(options: DemoOptions): Promise<number> {
  const say = (text: string) => options.write(text + '\n');
  const step = (text: string) => say(`\n== ${text}`);
  const dir = await mkdtemp(join(tmpdir(), 'piota-demo-'));
  let hub: RunningHub | undefined;
  let server: BundleServer | undefined;
  let sim: ChildProcess | undefined;
  let stopNarration: (() => void) | undefined;
  try {
    step('1. An IoT Hub of our own');
    hub = await startHub({ dir: join(dir, 'hub'), mqttPort: 0, httpsPort: 0 });
    say(`The hub emulator listens on mqtts://localhost:${hub.info.mqttPort} (devices) and https://localhost:${hub.info.httpsPort} (service API).`);
    say('Devices and services talk to it with the unmodified Azure IoT SDKs, over TLS, with real SAS authentication.');

    step('2. A signing key and a signed firmware bundle');
    const keys = generateKeyPair();
    await writeFile(join(dir, 'piota.key'), keys.privateKeyPem, { mode: 0o600 });
    await writeFile(join(dir, 'piota.pub'), keys.publicKeyPem);
    await writeDemoImage(join(dir, 'rootfs.img'), 'rootfs 1.0.1', 24 * 1024 * 1024);
    await writeDemoImage(join(dir, 'boot.img'), 'boot 1.0.1', 4 * 1024 * 1024);
    const bundlePath = join(dir, 'firmware-1.0.1.piota');
    const made = await createBundle({
      out: bundlePath,
      version: '1.0.1',
      compatible: ['raspberrypi4-64'],
      payloads: [
        { name: 'boot', file: join(dir, 'boot.img') },
        { name: 'rootfs', file: join(dir, 'rootfs.img') },
      ],
      chunkSize: 1024 * 1024,
      signingKeys: [keys.privateKeyPem],
    });
    const stored = made.manifest.bundleSize;
    say(`Key ${keys.keyId} signed firmware-1.0.1.piota: boot 4 MiB + rootfs 24 MiB in ${made.manifest.chunks.length} gzip chunks, ${(stored / 1048576).toFixed(1)} MiB.`);
    say('The device trusts only this public key: a leaked hub credential cannot flash anything else.');

    step('3. A download server');
    const certs = await ensureCertificates(join(dir, 'hub'), 'localhost');
    server = await serveFiles([bundlePath], { key: certs.serverKeyPem, cert: certs.serverCertPem });
    const url = server.url(bundlePath);
    say(`The bundle is served over HTTPS at ${url}`);

    step('4. A simulated Raspberry Pi running version 1.0.0');
    const piDir = join(dir, 'pi');
    await writeFile(join(dir, 'daemon-extra.json'), JSON.stringify({ progressIntervalSeconds: 1, trialTimeoutSeconds: 60 }));
    const simLines: string[] = [];
    let firmwareSays: ((line: string) => void) | undefined;
    sim = spawn(process.execPath, [
      piotaBin, 'simulate', '--dir', piDir, '--hub-dir', join(dir, 'hub'), '--device', 'demo-pi',
      '--pubkey', join(dir, 'piota.pub'), '--download-ca', certs.caFile, '--version', '1.0.0',
      '--slot-size', '64M', '--daemon-config', join(dir, 'daemon-extra.json'),
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    sim.stdout!.on('data', (d: Buffer) => {
      for (const line of d.toString().split('\n').filter(Boolean)) {
        simLines.push(line);
        if (/reboot requested|boot \d+:/.test(line)) firmwareSays?.(line.replace(/^piota simulate: /, ''));
      }
    });
    sim.stderr!.on('data', (d: Buffer) => simLines.push(...d.toString().split('\n').filter(Boolean)));
    say('The simulator plays the Pi firmware (A/B slots, autoboot.txt, tryboot) around the real piota daemon.');
    // Started = connected and its inventory reported: the daemon reports after it has read the twin,
    // by which time its direct methods are subscribed.
    const service = iothubService(hub.info);
    const reportedInventory = () =>
      service.reportedProperties('demo-pi').then((r) => (r.piota as { bootedSlot?: string } | undefined)?.bootedSlot !== undefined, () => false);
    await waitUntil(async () => hub!.connectedDevices().includes('demo-pi') && (await reportedInventory()), 30_000, options.signal, () => `the simulated Pi did not connect:\n${simLines.join('\n')}`);
    say('demo-pi booted slot A and connected to the hub.');
    stopNarration = narrateDaemonLog(join(piDir, 'daemon.log'), (line) => say(`   device: ${line}`));
    firmwareSays = (line) => say(`   Pi firmware: ${line}`);

    step('5. piota trigger: invoke firmwareUpdate and follow the twin');
    const print = followPrinter({ json: false, tty: false, write: options.write });
    const result = await triggerAndFollow(service, {
      deviceId: 'demo-pi',
      payload: { fwPackageUri: url },
      timeoutMs: 120_000,
      signal: options.signal,
      onEvent: (e: FollowEvent) => print(e),
    });
    await new Promise((r) => setTimeout(r, 300)); // let the last narrated lines land
    stopNarration();
    stopNarration = undefined;
    firmwareSays = undefined;

    step('Result');
    if (result.exitCode === 0) {
      const state = JSON.parse(await readFile(join(piDir, 'sim.json'), 'utf8')) as { bootedSlot: string };
      say(`demo-pi now runs ${result.firmwareVersion ?? '1.0.1'} from slot ${state.bootedSlot}, committed. The twin says applyComplete.`);
      say('Try it by hand: README.md, "Try it by hand".');
    } else {
      say(`The update did not complete: ${result.message}`);
    }
    if (options.keep) say(`Files kept in ${dir}`);
    return result.exitCode;
  } finally {
    stopNarration?.();
    if (sim && sim.exitCode === null && sim.signalCode === null) {
      const exited = new Promise((r) => sim!.once('exit', r));
      sim.kill('SIGTERM');
      await exited;
    }
    await server?.close();
    await hub?.close();
    if (!options.keep) await rm(dir, { recursive: true, force: true });
  }
}

async function waitUntil(check: () => boolean | Promise<boolean>, timeoutMs: number, signal: AbortSignal | undefined, failure: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (signal?.aborted) throw signal.reason;
    if (Date.now() > deadline) throw new Error(failure());
    await new Promise((r) => setTimeout(r, 100));
  }
}
