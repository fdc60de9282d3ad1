import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startHub, type RunningHub } from '../../src/hub-emulator/index.js';
import { piotaBin } from '../../src/simulator/daemon-config.js';
import { createBundle } from '../../src/bundle/create.js';
import { generateKeyPair } from '../../src/bundle/keys.js';
import { serviceClient, serviceRegistry } from '../../src/service/hub-connection.js';
import { HubCore } from '../../src/hub-emulator/hub-core.js';
import type { BootRecord } from '../../src/simulator/boot-record.js';
import { startTestFileServer, type TestFileServer } from '../helpers/https-file-server.js';
import { waitFor } from '../helpers/wait-for.js';

export { piotaBin };
export type { BootRecord };

export interface SimJson {
  daemonPid: number | null;
  bootedSlot: 'A' | 'B';
  trial: boolean;
  bootCount: number;
  autoboot: string;
  slots: Record<'A' | 'B', { boot: string; rootfs: string }>;
  partitions?: Record<'A' | 'B', number>;
}

/** `piota status --json` (docs/status.md): the only view of the daemon's state file these tests take. */
export interface StatusJson {
  bootedSlot: 'A' | 'B';
  committedSlot: 'A' | 'B';
  trialBoot: boolean;
  runningVersion: string;
  slots: Record<'A' | 'B', { version: string; sha256: string } | null>;
  update: StatusUpdate | null;
  lastResult: StatusUpdate | null;
  desiredFirmware: { desiredId: string | null; updateId: string | null; decision: string; message: string | null; at: string } | null;
}

export interface StatusUpdate {
  updateId: string;
  status: string;
  phase: string;
  targetSlot: 'A' | 'B';
  targetVersion: string | null;
  error: { code: string; message: string } | null;
}

/** One reported-properties PATCH as the hub accepted it (persisted, about to be acknowledged). */
export interface ReportedPatch {
  deviceId: string;
  /** Order of acceptance across the whole test process. */
  seq: number;
  /** When the hub accepted it (Date.now()). */
  at: number;
  patch: Record<string, any>;
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
  /** Bundle format (default: what `piota bundle create` makes, 2). */
  formatVersion?: number;
}

/**
 * Everything an end-to-end test needs, all real: the hub emulator (in process, so a test can stop and
 * restart it), a trusted signing key, an HTTPS file server on loopback, simulated Pis running the real
 * daemon as `piota simulate` child processes, and the service SDK (azure-iothub) calls of Microsoft's
 * firmware-update sample.
 */
/**
 * Every reported PATCH any hub of this test process accepted, in order. The emulator keeps no twin
 * history, so its HubCore.reportedPatch is wrapped once (the hub still does all the work): a patch is
 * recorded once it is persisted, i.e. exactly what a service could have read on the twin. A prototype
 * wrap, so it holds across restarts of the hub (each start makes a new HubCore).
 */
const acceptedPatches: ReportedPatch[] = [];
let recordingPatches = false;

function recordReportedPatches(): void {
  if (recordingPatches) return;
  recordingPatches = true;
  const original = HubCore.prototype.reportedPatch;
  let seq = 0;
  HubCore.prototype.reportedPatch = async function (this: HubCore, deviceId: string, patch: Parameters<typeof original>[1]) {
    const version = await original.call(this, deviceId, patch);
    acceptedPatches.push({ deviceId, seq: seq++, at: Date.now(), patch: structuredClone(patch) as Record<string, any> });
    return version;
  };
}

export class World {
  hub!: RunningHub;
  files!: TestFileServer;
  dir!: string;
  key!: { privateKeyPem: string; publicKeyPem: string; pubFile: string };
  private sims: ChildProcess[] = [];

  static async create(): Promise<World> {
    recordReportedPatches();
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

  /** Every reported PATCH the hub accepted from `deviceId` so far (across hub restarts), oldest first. */
  reportedPatches(deviceId: string): ReportedPatch[] {
    return acceptedPatches.filter((p) => p.deviceId === deviceId);
  }

  /** Builds a signed bundle of random images and serves it; returns its URL. */
  async bundle(name: string, spec: BundleSpec): Promise<{ url: string; path: string; version: string; rootfs: Buffer; boot: Buffer }> {
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
      formatVersion: spec.formatVersion,
      signingKeys: [spec.signingKey ?? this.key.privateKeyPem],
    });
    this.files.add(name, path);
    return { url: this.files.url(name), path, version: spec.version, rootfs, boot };
  }

  /** Starts a simulated Pi (`piota simulate`) and waits until its daemon has connected. */
  async pi(deviceId: string, options: PiOptions = {}): Promise<SimulatedPi> {
    const dir = join(this.dir, deviceId);
    const args = [piotaBin, 'simulate', '--dir', dir, '--hub-dir', this.hubDir, '--device', deviceId, '--pubkey', this.key.pubFile,
      '--download-ca', this.files.caFile, '--slot-size', options.slotSize ?? '4M', '--version', options.version ?? '1.0.0'];
    if (options.failTrial) args.push('--fail-trial');
    const daemonConfig = { trialTimeoutSeconds: 20, progressIntervalSeconds: 1, ...options.daemonConfig };
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'extra-config.json'), JSON.stringify(daemonConfig));
    args.push('--daemon-config', join(dir, 'extra-config.json'));
    const env = options.bootRecord ? { ...process.env, PIOTA_SIM_BOOT_RECORD: '1' } : process.env;
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
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

export interface PiOptions {
  failTrial?: boolean;
  daemonConfig?: Record<string, unknown>;
  version?: string;
  /** --slot-size (default 4M). */
  slotSize?: string;
  /** The simulator appends every boot, with the booted slot's hashes, to DIR/boots.jsonl (PIOTA_SIM_BOOT_RECORD). */
  bootRecord?: boolean;
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

  /** `piota status --json` on this Pi's config (docs/status.md); works whether the daemon runs or not. */
  async status(): Promise<StatusJson> {
    return JSON.parse(await this.statusText(['--json'])) as StatusJson;
  }

  /** `piota status` on this Pi's config: the text for a person (with `--json`, the JSON text). */
  statusText(extra: string[] = []): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(process.execPath, [piotaBin, 'status', '--config', join(this.dir, 'config.json'), ...extra], { encoding: 'utf8' }, (err, stdout, stderr) => {
        if (err) reject(new Error(`piota status ${extra.join(' ')} failed: ${stderr || err.message}`));
        else resolve(stdout);
      });
    });
  }

  /** The simulator's boot record (needs `bootRecord: true`): every boot since the Pi was first powered on. */
  async bootRecords(): Promise<BootRecord[]> {
    const text = await readFile(join(this.dir, 'boots.jsonl'), 'utf8').catch(() => '');
    return text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as BootRecord);
  }

  /**
   * Freezes the running daemon (SIGSTOP): nothing it does after this instant happens, so what is on disk
   * can be read before deciding to cut (`cutFrozen`) or let it go on (`thaw`). Undefined when no daemon runs.
   */
  async freeze(): Promise<number | undefined> {
    const pid = (await this.sim()).daemonPid;
    if (pid === null) return undefined;
    try {
      process.kill(pid, 'SIGSTOP');
      return pid;
    } catch {
      return undefined; // it has just exited
    }
  }

  thaw(pid: number): void {
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      // gone meanwhile: nothing to resume
    }
  }

  /** The power cut for a frozen daemon: SIGKILL (the simulator boots the board again); waits for the next boot's daemon. */
  async cutFrozen(pid: number, bootCountBefore: number): Promise<void> {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // it exited between the freeze and now
    }
    await waitFor('the board to boot again', async () => {
      const s = await this.sim();
      return s.bootCount > bootCountBefore && s.daemonPid !== null && s.daemonPid !== pid;
    }, 20_000);
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
