import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startHub, type RunningHub } from '../../src/hub-emulator/index.js';
import { piotaBin } from '../../src/simulator/daemon-config.js';
import { createBundle } from '../../src/bundle/create.js';
import { generateKeyPair } from '../../src/bundle/keys.js';
import { serviceClient, serviceRegistry } from '../../src/service/hub-connection.js';
import { startTestFileServer, type TestFileServer } from '../helpers/https-file-server.js';
import { waitFor } from '../helpers/wait-for.js';

export { piotaBin };

export interface SimJson {
  daemonPid: number | null;
  bootedSlot: 'A' | 'B';
  trial: boolean;
  bootCount: number;
  autoboot: string;
  slots: Record<'A' | 'B', { boot: string; rootfs: string }>;
}

export interface BundleSpec {
  version: string;
  securityVersion?: number;
  compatible?: string[];
  rootfsBytes?: number;
  bootBytes?: number;
  chunkSize?: number;
  /** Sign with this private key instead of the trusted one. */
  signingKey?: string;
}

/**
 * Everything an end-to-end test needs, all real: the hub emulator (in process, so a test can stop and
 * restart it), a trusted signing key, an HTTPS file server on loopback, simulated Pis running the real
 * daemon as `piota simulate` child processes, and the service SDK (azure-iothub) calls of Microsoft's
 * firmware-update sample.
 */
export class World {
  hub!: RunningHub;
  files!: TestFileServer;
  dir!: string;
  key!: { privateKeyPem: string; publicKeyPem: string; pubFile: string };
  private sims: ChildProcess[] = [];

  static async create(): Promise<World> {
    const w = new World();
    w.dir = await mkdtemp(join(tmpdir(), 'piota-e2e-'));
    w.hub = await startHub({ dir: join(w.dir, 'hub'), mqttPort: 0, httpsPort: 0 });
    w.files = await startTestFileServer();
    const k = generateKeyPair();
    const pubFile = join(w.dir, 'piota.pub');
    await writeFile(pubFile, k.publicKeyPem);
    w.key = { privateKeyPem: k.privateKeyPem, publicKeyPem: k.publicKeyPem, pubFile };
    return w;
  }

  get hubDir(): string {
    return join(this.dir, 'hub');
  }

  /** Stops the hub (devices lose their link); `restartHub` brings it back on the same ports. */
  async stopHub(): Promise<void> {
    await this.hub.close();
  }

  async restartHub(): Promise<void> {
    this.hub = await startHub({ dir: this.hubDir, mqttPort: this.hub.info.mqttPort, httpsPort: this.hub.info.httpsPort });
  }

  /** Builds a signed bundle of random images and serves it; returns its URL. */
  async bundle(name: string, spec: BundleSpec): Promise<{ url: string; path: string; rootfs: Buffer }> {
    const dir = join(this.dir, 'bundles');
    await mkdir(dir, { recursive: true });
    const rootfs = randomBytes(spec.rootfsBytes ?? 256 * 1024);
    const boot = randomBytes(spec.bootBytes ?? 64 * 1024);
    await writeFile(join(dir, `${name}.rootfs`), rootfs);
    await writeFile(join(dir, `${name}.boot`), boot);
    const path = join(dir, name);
    await createBundle({
      out: path,
      version: spec.version,
      securityVersion: spec.securityVersion ?? 0,
      compatible: spec.compatible ?? ['raspberrypi4-64'],
      payloads: [
        { name: 'rootfs', file: join(dir, `${name}.rootfs`) },
        { name: 'boot', file: join(dir, `${name}.boot`) },
      ],
      chunkSize: spec.chunkSize ?? 64 * 1024,
      compression: 'none',
      signingKeys: [spec.signingKey ?? this.key.privateKeyPem],
    });
    this.files.add(name, path);
    return { url: this.files.url(name), path, rootfs };
  }

  /** Starts a simulated Pi (`piota simulate`) and waits until its daemon has connected. */
  async pi(deviceId: string, options: { failTrial?: boolean; daemonConfig?: Record<string, unknown>; version?: string } = {}): Promise<SimulatedPi> {
    const dir = join(this.dir, deviceId);
    const args = [piotaBin, 'simulate', '--dir', dir, '--hub-dir', this.hubDir, '--device', deviceId, '--pubkey', this.key.pubFile,
      '--download-ca', this.files.caFile, '--slot-size', '4M', '--version', options.version ?? '1.0.0'];
    if (options.failTrial) args.push('--fail-trial');
    const daemonConfig = { trialTimeoutSeconds: 20, progressIntervalSeconds: 1, ...options.daemonConfig };
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'extra-config.json'), JSON.stringify(daemonConfig));
    args.push('--daemon-config', join(dir, 'extra-config.json'));
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    this.sims.push(child);
    const pi = new SimulatedPi(this, deviceId, dir, child, () => output);
    // Started = connected and the inventory reported (the daemon reports it at every start).
    await waitFor(`${deviceId} to connect and report`, async () => {
      if (!this.hub.connectedDevices().includes(deviceId)) return false;
      return (await this.reported(deviceId)).piota?.bootedSlot !== undefined;
    }, 30_000);
    return pi;
  }

  /** Microsoft's sample call: invokeDeviceMethod on the service Client. */
  async invoke(deviceId: string, methodName: string, payload: unknown): Promise<{ status: number; payload: Record<string, unknown> }> {
    const client = serviceClient(this.hub.info);
    const { result } = await client.invokeDeviceMethod(deviceId, { methodName, payload, responseTimeoutInSeconds: 30 });
    return result as { status: number; payload: Record<string, unknown> };
  }

  /** Microsoft's sample call: Registry.getTwin, reported properties. */
  async reported(deviceId: string): Promise<Record<string, any>> {
    const { responseBody } = await serviceRegistry(this.hub.info).getTwin(deviceId);
    return responseBody.properties.reported as Record<string, any>;
  }

  /** Polls the twin until the firmwareUpdate section of `updateId` satisfies `pred`. */
  async waitForUpdate(deviceId: string, updateId: string, pred: (fu: Record<string, any>) => boolean, timeoutMs = 45_000): Promise<Record<string, any>> {
    return waitFor(`update ${updateId} on ${deviceId}`, async () => {
      const r = await this.reported(deviceId).catch(() => undefined);
      const fu = r?.iothubDM?.firmwareUpdate;
      return fu && fu.updateId === updateId && pred(fu) ? r : undefined;
    }, timeoutMs);
  }

  async close(): Promise<void> {
    for (const s of this.sims) {
      if (s.exitCode === null && s.signalCode === null) {
        s.kill('SIGTERM');
        await new Promise((r) => s.once('exit', r));
      }
    }
    await this.files.close();
    await this.hub.close().catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
  }
}

export class SimulatedPi {
  constructor(
    readonly world: World,
    readonly deviceId: string,
    readonly dir: string,
    readonly process: ChildProcess,
    readonly output: () => string,
  ) {}

  async sim(): Promise<SimJson> {
    return JSON.parse(await readFile(join(this.dir, 'sim.json'), 'utf8')) as SimJson;
  }

  async autoboot(): Promise<string> {
    return readFile((await this.sim()).autoboot, 'utf8');
  }

  async daemonLog(): Promise<string> {
    return readFile(join(this.dir, 'daemon.log'), 'utf8').catch(() => '');
  }

  async state(): Promise<Record<string, any>> {
    return (JSON.parse(await readFile(join(this.dir, 'data', 'state.json'), 'utf8')) as { data: Record<string, any> }).data;
  }

  /** A power cut: SIGKILL the daemon; the simulator boots the board again. */
  async powerCut(): Promise<void> {
    const before = await this.sim();
    if (before.daemonPid) process.kill(before.daemonPid, 'SIGKILL');
    await waitFor('the board to boot again', async () => {
      const s = await this.sim();
      return s.bootCount > before.bootCount && s.daemonPid !== null;
    }, 20_000);
  }
}

export { waitFor };
