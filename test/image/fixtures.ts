/**
 * What the image tests share: the CLI run as a user runs it, the piota package built once per test
 * file, a signing key and a CA, and independent readers of an image (sfdisk, mtools, debugfs), so
 * that the tests do not check the converter with its own code.
 */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { standinSkipReason } from '../helpers/standin-image.js';

export const repo = fileURLToPath(new URL('../..', import.meta.url));
const bin = join(repo, 'bin/piota.js');

export interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** `node bin/piota.js ARGS`, as a user runs it. */
export function piota(args: readonly string[], options: SpawnSyncOptions & { input?: string } = {}): Ran {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, timeout: 600_000, ...options });
  return { status: r.status, stdout: String(r.stdout), stderr: String(r.stderr) };
}

export function run(command: string, args: readonly string[], input?: string): string {
  const r = spawnSync(command, args, { encoding: 'utf8', input, maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (exit ${r.status}): ${(r.stderr || r.error?.message || '').slice(-2000)}`);
  return r.stdout;
}

const TOOLS = ['sfdisk', 'mcopy', 'mtype', 'debugfs', 'e2image', 'dpkg-deb', 'openssl', 'losetup'];

/** Why the image tests cannot run here, or undefined when they can. */
export function imageSkipReason(): string | undefined {
  if (!existsSync(join(repo, 'dist/cli/image-convert.js'))) return 'dist/ is not built (npm run build)';
  for (const tool of TOOLS) if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is missing (see .ci/run)`;
  return standinSkipReason();
}

/** The .deb of this checkout, built once per build of dist/ and shared (test/helpers/piota-deb.ts). */
export { piotaDeb as buildDeb } from '../helpers/piota-deb.js';

/** An ed25519 key pair (piota bundle keygen) and a self-signed CA certificate in `dir`. */
export function keysAndCa(dir: string): { key: string; pub: string; ca: string } {
  const k = piota(['bundle', 'keygen', '--out', join(dir, 'keys')]);
  if (k.status !== 0) throw new Error(k.stderr);
  const ca = join(dir, 'ca.pem');
  run('openssl', ['req', '-x509', '-newkey', 'ed25519', '-nodes', '-keyout', join(dir, 'ca.key'), '-out', ca, '-days', '1', '-subj', '/CN=piota image test CA']);
  return { key: join(dir, 'keys/piota.key'), pub: join(dir, 'keys/piota.pub'), ca };
}

export function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** sha256 of `length` bytes of `path` from `start`, read 4 MiB at a time. */
export async function sha256Range(path: string, start: number, length: number): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const hash = createHash('sha256');
    const buf = Buffer.alloc(4 * 1024 * 1024);
    for (let done = 0; done < length; ) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, length - done), start + done);
      if (bytesRead === 0) throw new Error(`${path} ended early`);
      hash.update(buf.subarray(0, bytesRead));
      done += bytesRead;
    }
    return hash.digest('hex');
  } finally {
    await fh.close();
  }
}

export interface TablePartition {
  node: string;
  start: number;
  size: number;
  type: string;
}

/** The partition table as sfdisk reads it: the disk id (8 hex digits) and partitions (sectors). */
export function partitionTable(image: string): { id: string; partitions: TablePartition[] } {
  const t = JSON.parse(run('sfdisk', ['-J', image])).partitiontable as { id: string; partitions: TablePartition[] };
  return { id: t.id.replace(/^0x/, ''), partitions: t.partitions };
}

export const byteStart = (p: TablePartition): number => p.start * 512;

/** A file on the FAT partition starting at sector `p.start`, with mtools; undefined when absent. */
export function fatFile(image: string, p: TablePartition, name: string): string | undefined {
  const r = spawnSync('mtype', ['-i', `${image}@@${byteStart(p)}`, `::/${name}`], { encoding: 'utf8', env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } });
  return r.status === 0 ? r.stdout : undefined;
}

/** A debugfs request on the ext4 file system of partition `p`: stdout, and whether it failed. */
export function debugfs(image: string, p: TablePartition, request: string, write = false): { out: string; failed: boolean } {
  const r = spawnSync('debugfs', [...(write ? ['-w'] : []), '-R', request, `${image}?offset=${byteStart(p)}`], { encoding: 'utf8' });
  return { out: r.stdout, failed: r.status !== 0 || /not found|Could not|Bad magic/i.test(r.stderr) };
}

export function ext4File(image: string, p: TablePartition, path: string): string | undefined {
  const r = debugfs(image, p, `cat "${path}"`);
  return r.failed ? undefined : r.out;
}

export function ext4Link(image: string, p: TablePartition, path: string): string | undefined {
  const r = debugfs(image, p, `stat "${path}"`);
  return r.failed ? undefined : /Fast link dest: "(.*)"/.exec(r.out)?.[1];
}

/** Loop devices still attached to `file` (a converter that leaked one would show here). */
export function loopsOn(file: string): string[] {
  return run('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE'])
    .split('\n')
    .filter((l) => l.includes(file));
}
