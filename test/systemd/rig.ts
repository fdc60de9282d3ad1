/**
 * A real systemd to run piota under: a Debian root built once with mmdebstrap and cached, booted
 * with `systemd-nspawn --boot` on a throw-away overlay (the cached root is never written), running
 * the units a test gives it, and reporting how the system ended (reboot or power-off, the reboot
 * argument it was asked for) and the files the units wrote.
 *
 * The host needs no systemd of its own: `--register=no --keep-unit` keeps nspawn off the host's bus.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { recorderUnit } from '../../src/simulator/image/reboot-recorder.js';

export interface RootSpec {
  suite: string;
  variant: 'minbase' | 'apt' | 'extract';
  packages: readonly string[];
  mirror: string;
  /** A Debian architecture (arm64...); the host's when absent. A foreign one needs variant 'extract'. */
  arch?: string;
}

/** Raspberry Pi OS trixie's systemd (257) and Node.js (20), on the host's architecture. */
export const TRIXIE_WITH_NODE: RootSpec = {
  suite: 'trixie',
  variant: 'minbase',
  packages: ['systemd', 'systemd-sysv', 'dbus', 'nodejs'],
  mirror: process.env.PIOTA_RIG_MIRROR ?? 'http://deb.debian.org/debian',
};

/** Built roots live here, one directory per spec; delete a directory to rebuild it. */
export const CACHE_DIR = process.env.PIOTA_RIG_CACHE ?? '/var/cache/piota-test';

/** Inside the container: the directory whose files come back to the test (BootResult.out). */
export const GUEST_OUT = '/rig/out';

/** Exit status of systemd-nspawn when the container rebooted (0 when it powered off). */
export const NSPAWN_REBOOTED = 133;

const DEBIAN_KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';
const REBOOT_PARAM_FILE = 'rig-reboot-param';

function have(program: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${program}`]).status === 0;
}

/** Why the rig cannot run here, or undefined when it can. */
export function rigSkipReason(spec: RootSpec = TRIXIE_WITH_NODE): string | undefined {
  if (process.getuid?.() !== 0) return 'not root (systemd-nspawn and mmdebstrap --mode=root need root)';
  if (!have('systemd-nspawn')) return 'systemd-nspawn is missing (apt install systemd-container)';
  if (!existsSync(rootDirOf(spec)) && !have('mmdebstrap')) return 'mmdebstrap is missing (apt install mmdebstrap)';
  return undefined;
}

function rootDirOf(spec: RootSpec): string {
  const key = createHash('sha256')
    .update(JSON.stringify({ rig: 1, ...spec, packages: [...spec.packages].sort() }))
    .digest('hex')
    .slice(0, 16);
  return join(CACHE_DIR, `${spec.suite}-${key}`, 'root');
}

export interface BuiltRoot {
  root: string;
  /** False when the cached root was reused. */
  built: boolean;
  ms: number;
}

/** The root for `spec`, from the cache or built now (about 40 s with a warm network). */
export async function ensureRoot(spec: RootSpec = TRIXIE_WITH_NODE): Promise<BuiltRoot> {
  const started = Date.now();
  const root = rootDirOf(spec);
  if (existsSync(root)) return { root, built: false, ms: Date.now() - started };

  // Built beside its final place and renamed into it, so a half-built root is never reused and two
  // test runs building at once both end with one complete root.
  await mkdir(join(root, '..'), { recursive: true });
  const partial = await mkdtemp(join(root, '..', 'building-'));
  const target = join(partial, 'root');
  const args = ['--mode=root', `--variant=${spec.variant}`, `--include=${spec.packages.join(',')}`];
  if (spec.arch) args.push(`--arch=${spec.arch}`);
  if (existsSync(DEBIAN_KEYRING)) args.push(`--keyring=${DEBIAN_KEYRING}`);
  const r = await runToEnd('mmdebstrap', [...args, spec.suite, target, spec.mirror], 600_000);
  if (r.code !== 0) {
    await rm(partial, { recursive: true, force: true });
    throw new Error(`mmdebstrap ${spec.suite} failed (exit ${r.code}):\n${r.output.slice(-3000)}`);
  }
  try {
    await rename(target, root);
  } catch (err) {
    if (!existsSync(root)) throw err; // another run finished first: use its root
  }
  await rm(partial, { recursive: true, force: true });
  return { root, built: true, ms: Date.now() - started };
}

export interface Bind {
  host: string;
  guest: string;
  writable?: boolean;
}

export interface BootSpec {
  /** Unit files by name, installed in /etc/systemd/system for this boot only. */
  units?: Record<string, string>;
  /** Units pulled into the boot (systemd.wants=); default every unit in `units`. */
  start?: readonly string[];
  binds?: readonly Bind[];
  /** The container is stopped after this long (default 60 s). */
  timeoutMs?: number;
}

export interface BootResult {
  exitCode: number | null;
  /** The container rebooted (systemd-nspawn exited 133). */
  rebooted: boolean;
  timedOut: boolean;
  /** /run/systemd/reboot-param as systemd held it while stopping the system, if there was one. */
  rebootParam: string | undefined;
  /** Host directory with what the units wrote to GUEST_OUT. */
  out: string;
  /** The container's console (systemd's boot and shutdown messages). */
  console: string;
  ms: number;
  /** Removes `out` and the unit files. */
  cleanup(): Promise<void>;
}

// The simulator's own recorder (src/simulator/image/reboot-recorder.ts), writing to GUEST_OUT: by
// the time it stops, every `systemctl reboot --reboot-argument=` has written the file
// systemd-shutdown passes to reboot(2).
const rebootParamRecorder = recorderUnit(GUEST_OUT, REBOOT_PARAM_FILE);

/** Boots `root` until it reboots or powers off (or the timeout), with `spec`'s units started. */
export async function bootContainer(root: string, spec: BootSpec = {}): Promise<BootResult> {
  const work = await mkdtemp(join(tmpdir(), 'piota-rig-'));
  const out = join(work, 'out');
  await mkdir(join(work, 'units'));
  await mkdir(out);
  const units = { ...spec.units, 'piota-rig-reboot-param.service': rebootParamRecorder };
  const start = [...(spec.start ?? Object.keys(spec.units ?? {})), 'piota-rig-reboot-param.service'];

  const args = ['--quiet', '--boot', '--register=no', '--keep-unit', '--volatile=overlay', '--console=read-only', `--directory=${root}`, `--bind=${out}:${GUEST_OUT}`];
  for (const [name, text] of Object.entries(units)) {
    await writeFile(join(work, 'units', name), text);
    args.push(`--bind-ro=${join(work, 'units', name)}:/etc/systemd/system/${name}`);
  }
  for (const b of spec.binds ?? []) args.push(`${b.writable ? '--bind' : '--bind-ro'}=${b.host}:${b.guest}`);
  // Arguments after the directory go to the container's systemd, which reads them as its kernel
  // command line: systemd-debug-generator turns systemd.wants= into wants of the default target.
  args.push('systemd.log_color=0', ...start.map((u) => `systemd.wants=${u}`));

  const started = Date.now();
  const r = await runToEnd('systemd-nspawn', args, spec.timeoutMs ?? 60_000);
  const rebootParam = await readFile(join(out, REBOOT_PARAM_FILE), 'utf8').then(
    (s) => s.trim(),
    () => undefined,
  );
  return {
    exitCode: r.code,
    rebooted: r.code === NSPAWN_REBOOTED,
    timedOut: r.timedOut,
    rebootParam,
    out,
    console: r.output,
    ms: Date.now() - started,
    cleanup: () => rm(work, { recursive: true, force: true }),
  };
}

interface Finished {
  code: number | null;
  output: string;
  timedOut: boolean;
}

/** Runs a command to its end with stdout and stderr interleaved; SIGTERM at the timeout, SIGKILL 10 s later. */
function runToEnd(command: string, args: readonly string[], timeoutMs: number): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-200_000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    let timedOut = false;
    let killer: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGTERM'); // systemd-nspawn stops the container's system
      killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      clearTimeout(killer);
      resolve({ code, output, timedOut });
    });
  });
}

const repo = fileURLToPath(new URL('../..', import.meta.url));

/**
 * piota's `files` (paths from the repository root, under src/) as the build emits them
 * (tsconfig.build.json), compiled from the current sources with only what they import, so a test
 * never runs a stale dist/ nor depends on the rest of the tree compiling. Returns a directory to
 * bind into the container: its dist/ mirrors src/.
 */
export async function compileForGuest(files: readonly string[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'piota-rig-build-'));
  await writeFile(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
  await writeFile(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      extends: join(repo, 'tsconfig.build.json'),
      compilerOptions: { outDir: join(dir, 'dist'), rootDir: join(repo, 'src'), typeRoots: [join(repo, 'node_modules/@types')] },
      include: [],
      files: files.map((f) => join(repo, f)),
    }),
  );
  const r = spawnSync(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', dir], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`tsc of ${files.join(', ')} failed:\n${r.stdout}\n${r.stderr}`);
  return dir;
}
