import { describe, it, expect, beforeAll, afterAll, beforeEach, afterEach } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmod, cp, mkdir, mkdtemp, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateKeyPairSync } from 'node:crypto';
import { keyIdOf } from '../../src/bundle/keys.js';

// scripts/install.sh against a fake root (--root DIR): a directory holding what the package
// installs (the program is this checkout's, built: install.sh runs its `piota config check` and
// its key code), with a tmpfs mounted at DIR/data as the shared data partition. The real dpkg path
// is exercised in deb.test.ts.
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
const built = existsSync(join(repo, 'dist/cli/config-check.js'));
const runnable = canMount() && built;
if (!runnable) console.warn(built ? 'install.sh tests skipped: they need root and permission to mount a tmpfs (the data partition)' : 'install.sh tests skipped: dist/ is not built (npm run build)');
const SUPPORTED = 'piota supports device connection strings with HostName, DeviceId and SharedAccessKey; x509=true and SharedAccessSignature strings (which expire) are not supported';

/** A fresh ed25519 public key (PEM) written to FILE; returns its key id. */
async function newKey(file: string): Promise<string> {
  const { publicKey } = generateKeyPairSync('ed25519');
  await mkdir(join(file, '..'), { recursive: true });
  await writeFile(file, publicKey.export({ type: 'spki', format: 'pem' }));
  return keyIdOf(publicKey);
}

interface Run { status: number | null; stdout: string; stderr: string }

describe.skipIf(!runnable)('scripts/install.sh (fake root)', () => {
  let work: string;
  let root: string;
  let key: string;
  let keyId: string;
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
    keyId = await newKey(key);
  });

  beforeEach(async () => {
    // What the package puts on a system, enough for install.sh: the program, the config,
    // the unit (systemctl --root enables it), and a node in the image.
    root = await mkdtemp(join(work, 'root-'));
    await mkdir(join(root, 'usr/lib/piota'), { recursive: true });
    await symlink(join(repo, 'bin'), join(root, 'usr/lib/piota/bin'));
    await symlink(join(repo, 'dist'), join(root, 'usr/lib/piota/dist'));
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
      trustedKeys: [`/etc/piota/keys/${keyId}.pub`],
      slots: { A: { boot: '/dev/nvme0n1p2', rootfs: '/dev/nvme0n1p5' }, B: { boot: '/dev/nvme0n1p3', rootfs: '/dev/nvme0n1p6' } },
      boot: { backend: 'tryboot', bootPartitions: { A: 2, B: 3 }, autobootFile: '/boot/bootconfig/autoboot.txt' },
    });
    expect(await readFile(join(root, `etc/piota/keys/${keyId}.pub`), 'utf8')).toBe(await readFile(key, 'utf8'));
    expect(r.stdout).toContain(`key id ${keyId}`);
    // The default autoboot.txt: the units' own paths, no drop-ins.
    expect(existsSync(join(root, 'etc/systemd/system/piota.service.d'))).toBe(false);
    expect(existsSync(join(root, 'etc/systemd/system/piota-trial-guard.service.d'))).toBe(false);
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

  it('copies the hub and download CAs, sets the maintenance window, and with --no-enable leaves the unit alone', async () => {
    await mountTmpfs(join(root, 'data'));
    // Any PEM certificate will do for the copy; a real one, made the way users make them.
    const ca = join(work, 'ca.pem');
    const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'ed25519', '-nodes', '-keyout', join(work, 'ca.key'), '-out', ca, '-days', '1', '-subj', '/CN=piota test CA'], { encoding: 'utf8' });
    expect(made.status, made.stderr).toBe(0);
    const window = '{"cron":"0 2 * * *","durationMinutes":120,"timeZone":"Europe/Berlin"}';
    const r = install([...fleet, '--trusted-key', key, '--hub-ca', ca, '--download-ca', ca, '--maintenance-window', window, '--no-enable']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const config = JSON.parse(await readFile(join(root, 'etc/piota/config.json'), 'utf8'));
    expect(config.hubCaFile).toBe('/etc/piota/hub-ca.pem');
    expect(config.downloadCaFile).toBe('/etc/piota/download-ca.pem');
    expect(config.maintenanceWindow).toEqual(JSON.parse(window));
    expect(await readFile(join(root, 'etc/piota/hub-ca.pem'), 'utf8')).toBe(await readFile(ca, 'utf8'));
    expect(await readFile(join(root, 'etc/piota/download-ca.pem'), 'utf8')).toBe(await readFile(ca, 'utf8'));
    expect(existsSync(join(root, 'etc/systemd/system/multi-user.target.wants/piota.service'))).toBe(false);

    // 'none' clears the window; a file that is no certificate, or a window that is no JSON, is refused.
    expect(install(['--maintenance-window', 'none', '--no-enable']).status).toBe(0);
    expect(JSON.parse(await readFile(join(root, 'etc/piota/config.json'), 'utf8')).maintenanceWindow).toBeNull();
    const notCa = install(['--hub-ca', key, '--no-enable']);
    expect(notCa.status).toBe(1);
    expect(notCa.stderr).toContain(`CA file ${key}: not a PEM certificate`);
    const badWindow = install(['--maintenance-window', '0 2 * * *', '--no-enable']);
    expect(badWindow.status).toBe(1);
    expect(badWindow.stderr).toContain('--maintenance-window 0 2 * * *: expected JSON');
    const wrongWindow = install(['--maintenance-window', '{"cron":"0 25 * * *","durationMinutes":60}', '--no-enable']);
    expect(wrongWindow.status).toBe(1);
    expect(wrongWindow.stderr).toContain('maintenanceWindow.cron');
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
    // Canonical in both: no '//', '/./' or trailing '/'.
    const r = install(['--state-dir', '//srv/./shared//piota/', '--connection-string', CS]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(JSON.parse(await readFile(join(root, 'etc/piota/config.json'), 'utf8')).stateDir).toBe('/srv/shared/piota');
    const dropin = await readFile(join(root, 'etc/systemd/system/piota.service.d/state-dir.conf'), 'utf8');
    expect(dropin).toContain('ReadWritePaths=-/srv/shared/piota\n');
    expect(dropin).toContain('ConditionPathExists=/srv/shared/piota/connection-string');
    expect(await readFile(join(root, 'srv/shared/piota/connection-string'), 'utf8')).toBe(CS);
  });

  it('names what is wrong with bad input and writes nothing secret', async () => {
    await mountTmpfs(join(root, 'data'));
    const configPath = join(root, 'etc/piota/config.json');
    const before = await readFile(configPath, 'utf8');
    const noKey = install(['--connection-string', 'HostName=h.azure-devices.net;DeviceId=pi-7']);
    expect(noKey.status).toBe(1);
    expect(noKey.stderr).toBe(`install.sh: --connection-string: missing SharedAccessKey: ${SUPPORTED}\n`);
    expect(existsSync(join(root, 'data/piota/connection-string'))).toBe(false);
    // The daemon's rule, not a second one: x509=true is refused here as there.
    const x509 = install([...fleet, '--connection-string', '-'], { input: 'HostName=h.azure-devices.net;DeviceId=pi-7;x509=true\n' });
    expect(x509.status).toBe(1);
    expect(x509.stderr).toBe(`install.sh: --connection-string: this is an x509 (certificate) connection string: ${SUPPORTED}\n`);
    expect(existsSync(join(root, 'data/piota'))).toBe(false);
    expect(await readFile(configPath, 'utf8')).toBe(before);
    const slot = install(['--slot-a', 'rootfs:/dev/sda2']);
    expect(slot.status).toBe(1);
    expect(slot.stderr).toMatch(/--slot-a rootfs:\/dev\/sda2: expected PART=\/dev\//);
    // Ranges and choices are the daemon's (piota config check), refused before the config is replaced.
    const parts = install(['--boot-partitions', '2,2']);
    expect(parts.stderr).toMatch(/config .*\/etc\/piota\/config\.json: boot\.bootPartitions: A and B must differ; nothing changed/);
    const range = install(['--boot-partitions', '2,64']);
    expect(range.status).toBe(1);
    expect(range.stderr).toMatch(/boot\.bootPartitions\.B: expected a whole number from 1 to 63, got 64/);
    const backend = install(['--boot-backend', 'grub']);
    expect(backend.stderr).toMatch(/boot\.backend: expected one of tryboot, got "grub"/);
    expect(await readFile(configPath, 'utf8')).toBe(before);
    expect(readdirSync(join(root, 'etc/piota'))).toEqual(['config.json']);
    const badKey = join(work, 'not-a-key.pub');
    await writeFile(badKey, 'hello');
    expect(install(['--trusted-key', badKey]).stderr).toMatch(/not-a-key.pub: not a PEM public key/);
    expect(install(['--frobnicate']).stderr).toMatch(/unknown option '--frobnicate'/);
  });

  it('stores keys by key id: two keys both called piota.pub stay two keys; the same key twice is refused', async () => {
    await mountTmpfs(join(root, 'data'));
    // What two runs of `piota bundle keygen --out DIR` leave: DIR/piota.pub each time.
    const oldKey = join(work, 'old/piota.pub');
    const newKeyFile = join(work, 'new/piota.pub');
    const oldId = await newKey(oldKey);
    const newId = await newKey(newKeyFile);
    const r = install([...fleet, '--trusted-key', oldKey, '--trusted-key', newKeyFile, '--connection-string', CS]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const config = JSON.parse(await readFile(join(root, 'etc/piota/config.json'), 'utf8'));
    expect(config.trustedKeys).toEqual([`/etc/piota/keys/${oldId}.pub`, `/etc/piota/keys/${newId}.pub`]);
    expect(await readFile(join(root, `etc/piota/keys/${oldId}.pub`), 'utf8')).toBe(await readFile(oldKey, 'utf8'));
    expect(await readFile(join(root, `etc/piota/keys/${newId}.pub`), 'utf8')).toBe(await readFile(newKeyFile, 'utf8'));
    expect(r.stdout).toContain(`trusted key ${oldKey}: key id ${oldId}`);

    // The same key under another name: refused, naming both files and the id; nothing changes.
    const copy = join(work, 'copy-of-old.pub');
    await cp(oldKey, copy);
    const dup = install(['--trusted-key', oldKey, '--trusted-key', copy]);
    expect(dup.status).toBe(1);
    expect(dup.stderr).toBe(`install.sh: --trusted-key ${copy}: the same key as --trusted-key ${oldKey} (key id ${oldId}); give each key once\n`);
    expect(JSON.parse(await readFile(join(root, 'etc/piota/config.json'), 'utf8')).trustedKeys).toEqual(config.trustedKeys);
    // A private key is not a trusted key.
    const priv = join(work, 'signing.key');
    await writeFile(priv, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
    expect(install(['--trusted-key', priv]).stderr).toMatch(/signing\.key: this is a private key/);
  });

  it('refuses paths that would rewrite a unit drop-in or walk out of a directory, before changing anything', async () => {
    await mountTmpfs(join(root, 'data'));
    const configPath = join(root, 'etc/piota/config.json');
    const before = await readFile(configPath, 'utf8');
    const cases: [string[], RegExp][] = [
      [['--state-dir', '/data/piota\nExecStartPre=/bin/sh -c id'], /^install\.sh: --state-dir \$'\/data\/piota\\nExecStartPre=\/bin\/sh -c id': a control character \(a line break\?\) in a path\n$/],
      [['--state-dir', '/data/../etc'], /^install\.sh: --state-dir \/data\/\.\.\/etc: '\.\.' in a path\n$/],
      [['--state-dir', '/data/pi%n'], /^install\.sh: --state-dir \/data\/pi%n: '%' in a path \(systemd would read it as a specifier\)\n$/],
      [['--state-dir', '/data/my piota'], /whitespace in a path/],
      [['--state-dir', 'data/piota'], /--state-dir data\/piota: must be an absolute path/],
      [['--state-dir', '/data/'], /--state-dir \/data: must be an absolute path at least two levels deep/],
      [['--state-dir', '/home/pi/piota'], /hidden from the service by its sandbox/],
      [['--autoboot-file', '/boot/%H/autoboot.txt'], /--autoboot-file \/boot\/%H\/autoboot\.txt: '%' in a path/],
      [['--autoboot-file', '/boot/firmware/../../etc/autoboot.txt'], /'\.\.' in a path/],
      [['--autoboot-file', '/autoboot.txt'], /must be on the mounted boot-config partition .*not directly in \//],
      [['--autoboot-file', '/etc/autoboot.txt'], /not directly in \/etc/],
    ];
    for (const [args, error] of cases) {
      const r = install([...args, '--connection-string', CS]);
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stderr).toMatch(error);
    }
    expect(await readFile(configPath, 'utf8')).toBe(before);
    expect(existsSync(join(root, 'etc/systemd/system'))).toBe(false);
    expect(existsSync(join(root, 'data/piota'))).toBe(false);
    // A hand-edited config is held to the same rule before a drop-in is written from it.
    await writeFile(configPath, before.replace('"stateDir": "/data/piota"', '"stateDir": "/data/piota%i"'));
    const edited = install(['--connection-string', CS]);
    expect(edited.status).toBe(1);
    expect(edited.stderr).toMatch(/stateDir in .*config\.json: \/data\/piota%i: '%' in a path/);
    expect(existsSync(join(root, 'etc/systemd/system'))).toBe(false);
  });

  it('another autoboot.txt: drop-ins for both units, and the trial guard reads that file', async () => {
    await mountTmpfs(join(root, 'data'));
    const custom = '/boot/firmware/autoboot.txt';
    const r = install([...fleet, '--autoboot-file', custom, '--connection-string', CS]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(JSON.parse(await readFile(join(root, 'etc/piota/config.json'), 'utf8')).boot.autobootFile).toBe(custom);
    const agentDropin = await readFile(join(root, 'etc/systemd/system/piota.service.d/autoboot-file.conf'), 'utf8');
    expect(agentDropin).toMatch(/^\[Service\]\nReadWritePaths=-\/boot\/firmware$/m);
    const guardDropin = await readFile(join(root, 'etc/systemd/system/piota-trial-guard.service.d/autoboot-file.conf'), 'utf8');
    const env = /^Environment=PIOTA_AUTOBOOT_FILE=(.*)$/m.exec(guardDropin)?.[1];
    expect(env).toBe(custom);

    // The guard, as the unit runs it (no --autoboot) with the drop-in's environment, reads the
    // custom file: here the fake root's copy of it, a trial of partition 3 that [all] commits.
    const dt = join(root, 'proc-dt');
    await mkdir(dt);
    await writeFile(join(dt, 'tryboot'), Buffer.from([0, 0, 0, 1]));
    await writeFile(join(dt, 'partition'), Buffer.from([0, 0, 0, 3]));
    await mkdir(join(root, 'boot/firmware'), { recursive: true });
    await writeFile(join(root, custom), '[all]\ntryboot_a_b=1\nboot_partition=3\n[tryboot]\nboot_partition=3\n');
    const guard = spawnSync('sh', [join(repo, 'scripts/trial-guard.sh'), '--device-tree', dt, '--reboot-command', 'exit 9'], {
      encoding: 'utf8', env: { ...process.env, PIOTA_AUTOBOOT_FILE: join(root, env!) },
    });
    expect(guard.stderr).toBe(`piota-trial-guard: trial boot of partition 3, which is committed in ${join(root, custom)}: nothing to do\n`);
    expect(guard.status).toBe(0);

    // systemd reads both drop-ins without a complaint.
    if (spawnSync('systemd-analyze', ['--version']).status === 0) {
      const units = join(work, 'units');
      await rm(units, { recursive: true, force: true });
      await mkdir(join(units, 'piota-trial-guard.service.d'), { recursive: true });
      await writeFile(join(units, 'piota-trial-guard.service'), (await readFile(join(repo, 'systemd/piota-trial-guard.service'), 'utf8'))
        .replace('ExecStart=/usr/lib/piota/trial-guard.sh ', `ExecStart=${join(repo, 'scripts/trial-guard.sh')} `));
      await cp(join(root, 'etc/systemd/system/piota-trial-guard.service.d/autoboot-file.conf'), join(units, 'piota-trial-guard.service.d/autoboot-file.conf'));
      await mkdir(join(units, 'piota.service.d'));
      await writeFile(join(units, 'piota.service'), (await readFile(join(repo, 'systemd/piota.service'), 'utf8'))
        .replace('ExecStart=/usr/bin/piota ', `ExecStart=${process.execPath} `));
      await cp(join(root, 'etc/systemd/system/piota.service.d/autoboot-file.conf'), join(units, 'piota.service.d/autoboot-file.conf'));
      const v = spawnSync('systemd-analyze', ['verify', join(units, 'piota.service'), join(units, 'piota-trial-guard.service')], { encoding: 'utf8' });
      expect({ status: v.status, stderr: v.stderr }).toEqual({ status: 0, stderr: '' });
    } else {
      console.warn('drop-in verify skipped: systemd-analyze is not installed');
    }

    // Back to the default path: both drop-ins go.
    expect(install(['--autoboot-file', '/boot/bootconfig/autoboot.txt']).status).toBe(0);
    expect(existsSync(join(root, 'etc/systemd/system/piota.service.d'))).toBe(false);
    expect(existsSync(join(root, 'etc/systemd/system/piota-trial-guard.service.d'))).toBe(false);
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
    // A state directory path that walks out ('..') is never purged, nor accepted at all.
    const dotdot = install(['--uninstall', '--purge', '--state-dir', '/data/piota/../..']);
    expect(dotdot.status).toBe(1);
    expect(dotdot.stderr).toMatch(/--state-dir \/data\/piota\/\.\.\/\.\.: '\.\.' in a path/);
    expect(existsSync(join(root, 'etc/piota/config.json'))).toBe(true);
    const purged = install(['--uninstall', '--purge']);
    expect(purged.status).toBe(0);
    expect(existsSync(join(root, 'etc/piota'))).toBe(false);
    expect(existsSync(join(root, 'data/piota'))).toBe(false);
    expect(existsSync(join(root, 'data'))).toBe(true);
  });
});
