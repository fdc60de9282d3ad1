// The realistic release pair of `npm run bench:adaptive`: two ext4 root images built reproducibly
// from real Debian packages with mmdebstrap, cached under /var/cache/piota-test (PIOTA_RIG_CACHE).
// Release 1: trixie minbase + systemd, systemd-sysv, dbus, nodejs, ca-certificates.
// Release 2: the same plus curl, and a changed /etc/hostname and /etc/motd.
// Fixed: SOURCE_DATE_EPOCH (mmdebstrap, mkfs times via E2FSPROGS_FAKE_TIME), the filesystem UUID
// and the directory hash seed, the image size; so a rebuild diffs the way a real release would.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const CACHE = process.env.PIOTA_RIG_CACHE ?? '/var/cache/piota-test';
const MIRROR = process.env.PIOTA_RIG_MIRROR ?? 'http://deb.debian.org/debian';
const EPOCH = '1764460800'; // 2025-11-30T00:00:00Z
const UUID = '5f0c6a52-5c1e-4d43-9b0e-0d1a2b3c4d5e';
const HASH_SEED = '0b7e3c1d-2a4f-4e6b-8c9d-1e2f3a4b5c6d';
const IMAGE_MIB = 1024;
const BASE = ['systemd', 'systemd-sysv', 'dbus', 'nodejs', 'ca-certificates'];

export const RELEASES = {
  1: { packages: BASE, hostname: 'piota-r1\n', motd: 'piota release 1\n' },
  2: { packages: [...BASE, 'curl'], hostname: 'piota-r2\n', motd: 'piota release 2: now with curl\n' },
};

function run(cmd, args, env = {}) {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, ...env } });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status})`);
}

/** The path of release `n`'s ext4 image, built now if the cache lacks it (a few minutes). */
export function releaseImage(n) {
  const spec = RELEASES[n];
  const dir = join(CACHE, 'adaptive-pair-v1');
  const image = join(dir, `release-${n}.ext4`);
  if (existsSync(image)) return image;
  mkdirSync(dir, { recursive: true });
  const root = join(dir, `building-root-${n}`);
  rmSync(root, { recursive: true, force: true });
  const env = { SOURCE_DATE_EPOCH: EPOCH, E2FSPROGS_FAKE_TIME: EPOCH };
  run('mmdebstrap', ['--mode=root', '--variant=minbase', `--include=${spec.packages.join(',')}`,
    'trixie', root, MIRROR], env);
  writeFileSync(join(root, 'etc/hostname'), spec.hostname);
  writeFileSync(join(root, 'etc/motd'), spec.motd);
  const partial = `${image}.partial`;
  rmSync(partial, { force: true });
  run('mkfs.ext4', ['-q', '-F', '-b', '4096', '-U', UUID, '-E', `hash_seed=${HASH_SEED},root_owner=0:0`,
    '-L', 'rootfs', '-d', root, partial, `${IMAGE_MIB}M`], env);
  renameSync(partial, image);
  rmSync(root, { recursive: true, force: true });
  return image;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const n of [1, 2]) console.log(releaseImage(n));
}
