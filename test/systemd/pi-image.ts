/**
 * The converted image the Pi-in-a-box tests boot, built once and cached (CACHE_DIR) under a key of
 * everything that goes into it: the stand-in Raspberry Pi OS image (test/helpers/standin-image.ts),
 * converted by `piota image convert` with the .deb of the current build, a signing key and one CA
 * for the hub and the download server. Also the release bundles the tests install, made from the
 * image's own slot A as a vendor's build would. Handed out read-only: `piota simulate --image`
 * copies the image before it boots it.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureCertificates } from '../../src/hub-emulator/certificates.js';
import { CACHE_DIR, rigSkipReason } from './rig.js';
import { standinImage, standinSkipReason } from '../helpers/standin-image.js';
import { packageInputsKey, piotaDeb } from '../helpers/piota-deb.js';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const bin = join(repo, 'bin/piota.js');
const FIXTURE_VERSION = 1;
export const MODEL = 'raspberrypi4-64';

export interface PiImage {
  /** The converted A/B image (read-only: copy before writing). */
  image: string;
  /** The CA and server certificate the image trusts (ca.pem, server.pem...): a hub dir's tls/. */
  tlsDir: string;
  caFile: string;
  /** A signed bundle of slot A's boot and root file system at `version`. */
  release(version: string, kind?: 'healthy' | 'cannotStart'): Promise<string>;
}

/** Why the Pi-in-a-box tests cannot run here, or undefined when they can. */
export function piImageSkipReason(): string | undefined {
  for (const tool of ['mcopy', 'sfdisk', 'dpkg-deb', 'nsenter']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is missing (see .ci/run)`;
  }
  return rigSkipReason() ?? standinSkipReason();
}

function run(command: string, args: readonly string[], input?: string): string {
  const r = spawnSync(command, args, { encoding: 'utf8', input, maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (exit ${r.status}): ${(r.stderr || r.error?.message || '').slice(-2000)}`);
  return r.stdout;
}

/** The image, the key, the CA and the release bundles, from the cache or made now. */
export async function piImage(): Promise<PiImage> {
  const standin = await standinImage();
  const key = createHash('sha256')
    .update(JSON.stringify({ v: FIXTURE_VERSION, standin, pkg: packageInputsKey() }))
    .digest('hex')
    .slice(0, 16);
  const dir = join(CACHE_DIR, `pi-image-${key}`);
  if (!existsSync(join(dir, 'image.img'))) {
    await build(dir, standin, piotaDeb());
    // Earlier fixtures (another build of the package) are 1.6 GB each: only the newest is kept.
    for (const old of readdirSync(CACHE_DIR).filter((d) => /^pi-image-[0-9a-f]{16}$/.test(d) && join(CACHE_DIR, d) !== dir)) {
      await rm(join(CACHE_DIR, old), { recursive: true, force: true });
    }
  }
  return fixture(dir);
}

async function build(dir: string, standin: string, deb: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await ensureCertificates(dir, '127.0.0.1'); // dir/tls/{ca,server}.pem: names 127.0.0.1 and localhost
  if (!existsSync(join(dir, 'keys/piota.pub'))) run(process.execPath, [bin, 'bundle', 'keygen', '--out', join(dir, 'keys')]);
  const partial = join(dir, 'image.img.partial');
  await rm(partial, { force: true });
  const ca = join(dir, 'tls/ca.pem');
  run(process.execPath, [
    bin, 'image', 'convert', standin, '--out', partial, '--deb', deb, '--model', MODEL,
    '--trusted-key', join(dir, 'keys/piota.pub'), '--hub-ca', ca, '--download-ca', ca, '--version', '1.0.0',
    '--boot-size', '64M', '--root-size', '512M', '--data-size', '128M',
  ]);
  await rename(partial, join(dir, 'image.img'));
}

interface Part {
  offset: number;
  size: number;
}

function partitionOf(image: string, n: number): Part {
  const t = JSON.parse(run('sfdisk', ['--json', image])).partitiontable as { partitions: { node: string; start: number; size: number }[] };
  const p = t.partitions.find((x) => x.node.endsWith(String(n)))!;
  return { offset: p.start * 512, size: p.size * 512 };
}

function extract(image: string, part: Part, out: string): void {
  run('dd', [`if=${image}`, `of=${out}`, 'bs=4M', `skip=${part.offset}`, `count=${part.size}`, 'iflag=skip_bytes,count_bytes', 'conv=sparse', 'status=none']);
}

function fixture(dir: string): PiImage {
  const image = join(dir, 'image.img');
  return {
    image,
    tlsDir: join(dir, 'tls'),
    caFile: join(dir, 'tls/ca.pem'),
    async release(version, kind = 'healthy') {
      const bundle = join(dir, `fw-${version}-${kind}.piota`);
      if (existsSync(bundle)) return bundle;
      const work = await mkdtemp(join(dir, 'release-'));
      try {
        const boot = join(work, 'boot.img');
        const rootfs = join(work, 'rootfs.img');
        extract(image, partitionOf(image, 2), boot);
        extract(image, partitionOf(image, 5), rootfs);
        const mnt = join(work, 'mnt');
        await mkdir(mnt);
        run('mount', ['-o', 'loop', rootfs, mnt]);
        try {
          await writeFile(join(mnt, 'etc/piota-release'), `${version}\n`);
          if (kind === 'cannotStart') {
            // A release whose piota dies at start-up, before it could judge its own trial.
            await writeFile(join(mnt, 'usr/lib/piota/bin/piota.js'), "#!/usr/bin/env node\nconsole.error('piota: this release cannot start (test)');\nprocess.exit(1);\n");
          }
        } finally {
          run('umount', [mnt]);
        }
        run(process.execPath, [bin, 'bundle', 'create', '--key', join(dir, 'keys/piota.key'), '--version', version, '--compatible', MODEL,
          '--payload', `boot=${boot}`, '--payload', `rootfs=${rootfs}`, '--out', `${bundle}.partial`]);
        await rename(`${bundle}.partial`, bundle);
        return bundle;
      } finally {
        await rm(work, { recursive: true, force: true });
      }
    },
  };
}
