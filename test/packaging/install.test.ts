import { describe, it, expect, beforeAll, afterAll, beforeEach, afterEach } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmod, cp, mkdir, mkdtemp, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// scripts/install.sh against a fake root (--root DIR): a directory holding what the package
// installs, with a tmpfs mounted at DIR/data as the shared data partition. The real dpkg path is
// exercised in deb.test.ts.
const repo = fileURLToPath(new URL('../..', import.meta.url));
const script = join(repo, 'scripts', 'install.sh');
const CS = 'HostName=fleet.azure-devices.net;DeviceId=pi-7;SharedAccessKey=c2VjcmV0LWtleS1mb3ItdGVzdHM=';

function canMount(): boolean {
  if (process.getuid?.() !== 0) return false;
  const probe = join(tmpdir(), `piota-mount-probe-${process.pid}`);
  spawnSync('mkdir', ['-p', probe]);
  const ok = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', probe]).status === 0;
  if (ok) spawnSync('umount', [probe]);
  spawnSync('rmdir', [probe]);
  return ok;
}
const runnable = canMount();
if (!runnable) console.warn('install.sh tests skipped: they need root and permission to mount a tmpfs (the data partition)');

interface Run { status: number | null; stdout: string; stderr: string }

describe.skipIf(!runnable)('scripts/install.sh (fake root)', () => {
  let work: string;
  let root: string;
  let key: string;
  const mounts: string[] = [];

  async function mountTmpfs(dir: string, source = 'tmpfs'): Promise<void> {
    await mkdir(dir, { recursive: true });
    const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', source, dir], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`mount ${dir}: ${r.stderr}`);
    mounts.push(dir);
  }

  function install(args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}): Run {
    const r = spawnSync('bash', [script, '--root', root, ...args], {
      encoding: 'utf8', input: options.input ?? '', env: { ...process.env, ...options.env }, timeout: 30_000,
    });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  const fleet = [
    '--model', 'raspberrypi5',
    '--slot-a', 'boot=/dev/nvme0n1p2,rootfs=/dev/nvme0n1p5',
    '--slot-b', 'boot=/dev/nvme0n1p3,rootfs=/dev/nvme0n1p6',
    '--boot-backend', 'tryboot', '--boot-partitions', '2,3', '--autoboot-file', '/boot/bootconfig/autoboot.txt',
  ];

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'piota-install-'));
    key = join(work, 'vendor.pub');
    const { publicKey } = await import('node:crypto').then((c) => c.generateKeyPairSync('ed25519'));
    await writeFile(key, publicKey.export({ type: 'spki', format: 'pem' }));
  });

  beforeEach(async () => {
    // What the package puts on a system, enough for install.sh: the program, the config,
    // the unit (systemctl --root enables it), and a node in the image.
    root = await mkdtemp(join(work, 'root-'));
    await mkdir(join(root, 'usr/lib/piota/bin'), { recursive: true });
    await writeFile(join(root, 'usr/lib/piota/bin/piota.js'), '');
    await cp(join(repo, 'config.example.json'), join(root, 'usr/lib/piota/config.example.json'));
    await mkdir(join(root, 'etc/piota'), { recursive: true });
    await cp(join(repo, 'config.example.json'), join(root, 'etc/piota/config.json'));
    await mkdir(join(root, 'usr/lib/systemd/system'), { recursive: true });
    await cp(join(repo, 'systemd/piota.service'), join(root, 'usr/lib/systemd/system/piota.service'));
    await mkdir(join(root, 'usr/bin'), { recursive: true });
    await symlink(process.execPath, join(root, 'usr/bin/node'));
  });

  afterEach(async () => {
    while (mounts.length) spawnSync('umount', [mounts.pop()!]);
    await rm(root, { recursive: true, force: true });
  });

  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('writes the fleet config, the key, the connection string (0600) and enables the service', async () => {
    await mountTmpfs(join(root, 'data'));
    const r = install([...fleet, '--trusted-key', key, '--connection-string', CS]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const config = JSON.parse(await readFile(join(root, 'etc/piota/config.json'), 'utf8'));
    expect(config).toMatchObject({
      model: 'raspberrypi5',
      stateDir: '/data/piota',
      trustedKeys: ['/etc/piota/keys/vendor.pub'],
      slots: { A: { boot: '/dev/nvme0n1p2', rootfs: '/dev/nvme0n1p5' }, B: { boot: '/dev/nvme0n1p3', rootfs: '/dev/nvme0n1p6' } },
      boot: { backend: 'tryboot', bootPartitions: { A: 2, B: 3 }, autobootFile: '/boot/bootconfig/autoboot.txt' },
    });
    expect(await readFile(join(root, 'etc/piota/keys/vendor.pub'), 'utf8')).toBe(await readFile(key, 'utf8'));
    const csFile = join(root, 'data/piota/connection-string');
    expect(await readFile(csFile, 'utf8')).toBe(CS);
    expect((await stat(csFile)).mode & 0o777).toBe(0o600);
    expect((await stat(join(root, 'data/piota'))).mode & 0o777).toBe(0o700);
    expect(JSON.stringify(config)).not.toContain('SharedAccessKey');
    expect(await readlink(join(root, 'etc/systemd/system/multi-user.target.wants/piota.service')))
      .toBe('/usr/lib/systemd/system/piota.service');
    expect(r.stdout).not.toContain('c2VjcmV0');
    expect(r.stdout).toMatch(/journalctl -u piota/);
    expect(r.stdout).toMatch(/piota status/);
  });

  it('is safe to run twice, and keeps a config it was not asked to change', async () => {
    await mountTmpfs(join(root, 'data'));
    expect(install([...fleet, '--connection-string', '-'], { input: `${CS}\n` }).status).toBe(0);
    const configPath = join(root, 'etc/piota/config.json');
    const first = await readFile(configPath, 'utf8');
    const again = install([...fleet, '--connection-string', CS]);
    expect(again.status).toBe(0);
    expect(again.stdout).toMatch(/already as asked/);
    expect(again.stdout).toMatch(/already holds this connection string/);
    expect(await readFile(configPath, 'utf8')).toBe(first);
    // A hand edit survives a run without fleet flags.
    const edited = first.replace('"logLevel": "info"', '"logLevel": "debug"');
    await writeFile(configPath, edited);
    const keep = install([]);
    expect(keep.status).toBe(0);
    expect(keep.stdout).toMatch(/keeping the existing/);
    expect(await readFile(configPath, 'utf8')).toBe(edited);
    expect(await readFile(join(root, 'data/piota/connection-string'), 'utf8')).toBe(CS);
  });

  it('refuses a state directory on the root filesystem unless told otherwise', async () => {
    const r = install([...fleet, '--connection-string', CS]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/state directory \/data\/piota is on the root filesystem, which an A\/B update replaces/);
    expect(existsSync(join(root, 'data/piota'))).toBe(false);
    const allowed = install(['--allow-state-on-rootfs', '--connection-string', CS]);
    expect(allowed.status).toBe(0);
    expect(allowed.stdout).toMatch(/warning: state directory \/data\/piota is on the root filesystem/);
  });

  it('refuses a state directory on a slot partition', async () => {
    // A tmpfs whose source names a device: findmnt reports it like a mounted partition.
    await mountTmpfs(join(root, 'data'), '/dev/piota-test-slot-b');
    const r = install(['--slot-b', 'boot=/dev/nvme0n1p3,rootfs=/dev/piota-test-slot-b', '--connection-string', CS]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/is on \/dev\/piota-test-slot-b, a slot partition/);
  });

  it('puts another state directory in the config and a unit drop-in', async () => {
    await mountTmpfs(join(root, 'srv/shared'));
    const r = install(['--state-dir', '/srv/shared/piota', '--connection-string', CS]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(JSON.parse(await readFile(join(root, 'etc/piota/config.json'), 'utf8')).stateDir).toBe('/srv/shared/piota');
    const dropin = await readFile(join(root, 'etc/systemd/system/piota.service.d/state-dir.conf'), 'utf8');
    expect(dropin).toContain('ReadWritePaths=-/srv/shared/piota');
    expect(dropin).toContain('ConditionPathExists=/srv/shared/piota/connection-string');
    expect(await readFile(join(root, 'srv/shared/piota/connection-string'), 'utf8')).toBe(CS);
  });

  it('names what is wrong with bad input and writes nothing secret', async () => {
    await mountTmpfs(join(root, 'data'));
    const noKey = install(['--connection-string', 'HostName=h.azure-devices.net;DeviceId=pi-7']);
    expect(noKey.status).toBe(1);
    expect(noKey.stderr).toMatch(/missing SharedAccessKey/);
    expect(existsSync(join(root, 'data/piota/connection-string'))).toBe(false);
    const slot = install(['--slot-a', 'rootfs:/dev/sda2']);
    expect(slot.status).toBe(1);
    expect(slot.stderr).toMatch(/--slot-a rootfs:\/dev\/sda2: expected PART=\/dev\//);
    const parts = install(['--boot-partitions', '2,2']);
    expect(parts.stderr).toMatch(/--boot-partitions 2,2: expected two different partition numbers/);
    const backend = install(['--boot-backend', 'grub']);
    expect(backend.stderr).toMatch(/--boot-backend grub: the backends are: tryboot/);
    const badKey = join(work, 'not-a-key.pub');
    await writeFile(badKey, 'hello');
    expect(install(['--trusted-key', badKey]).stderr).toMatch(/not-a-key.pub: not a PEM public key/);
    expect(install(['--frobnicate']).stderr).toMatch(/unknown option '--frobnicate'/);
  });

  it('says how to get Node.js 20 when the node found is older', async () => {
    const bin = join(work, 'old-node-bin');
    await mkdir(bin, { recursive: true });
    await writeFile(join(bin, 'node'), '#!/bin/sh\necho 18.19.0\n');
    await chmod(join(bin, 'node'), 0o755);
    const r = install([], { env: { PATH: `${bin}:${process.env.PATH}` } });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/Node\.js 18\.19\.0 found .*piota needs 20 or newer/);
    expect(r.stderr).toMatch(/apt install nodejs/);
  });

  it('refuses to run without the package, and refuses --deb where there is no dpkg database', async () => {
    await rm(join(root, 'usr/lib/piota'), { recursive: true });
    expect(install([]).stderr).toMatch(/piota is not installed: give the package with --deb/);
    const fake = join(work, 'x.deb');
    await writeFile(fake, 'not a deb');
    expect(install(['--deb', fake]).stderr).toMatch(/x.deb: not a Debian package/);
  });

  it('uninstalls, keeping config and state unless purged', async () => {
    await mountTmpfs(join(root, 'data'));
    expect(install([...fleet, '--connection-string', CS]).status).toBe(0);
    const kept = install(['--uninstall']);
    expect(kept.status).toBe(0);
    expect(existsSync(join(root, 'etc/systemd/system/multi-user.target.wants/piota.service'))).toBe(false);
    expect(existsSync(join(root, 'etc/piota/config.json'))).toBe(true);
    expect(existsSync(join(root, 'data/piota/connection-string'))).toBe(true);
    const purged = install(['--uninstall', '--purge']);
    expect(purged.status).toBe(0);
    expect(existsSync(join(root, 'etc/piota'))).toBe(false);
    expect(existsSync(join(root, 'data/piota'))).toBe(false);
    expect(existsSync(join(root, 'data'))).toBe(true);
  });
});
