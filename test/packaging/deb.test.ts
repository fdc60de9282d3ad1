import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { keyIdOf } from '../../src/bundle/keys.js';
import { ensureBuilt } from '../simulator/helpers.js';

// Builds the .deb once from dist/ as `npm test` built it (--no-build: rebuilding dist/ here would
// rewrite the files that the end-to-end tests' daemons, running in parallel, load lazily), inspects
// it, and, as root in CI, installs, upgrades, removes and purges it with the real dpkg on this machine.
const repo = fileURLToPath(new URL('../..', import.meta.url));
const version = JSON.parse(await readFile(join(repo, 'package.json'), 'utf8')).version as string;
const CS = 'HostName=fleet.azure-devices.net;DeviceId=pi-ci;SharedAccessKey=Y2ktdGVzdC1rZXk=';

function run(cmd: string, args: string[], options: { input?: string; env?: NodeJS.ProcessEnv; timeout?: number } = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { encoding: 'utf8', timeout: options.timeout ?? 120_000, maxBuffer: 64 * 1024 * 1024, input: options.input ?? '', env: { ...process.env, ...options.env } });
}
function ok(r: SpawnSyncReturns<string>): string {
  if (r.status !== 0) throw new Error(`${r.error?.message ?? ''} exit ${r.status}\n${r.stdout.slice(-2000)}\n${r.stderr.slice(-2000)}`);
  return r.stdout;
}

const haveDpkgDeb = run('dpkg-deb', ['--version']).status === 0;
if (!haveDpkgDeb) console.warn('package tests skipped: dpkg-deb is not installed (apt install dpkg)');

// Real installs change this machine: only as root, and only where asked (CI sets PIOTA_DPKG_TESTS).
function realDpkgSkipReason(): string | undefined {
  if (!haveDpkgDeb) return 'no dpkg';
  if (process.getuid?.() !== 0) return 'not root';
  if (!process.env.CI && process.env.PIOTA_DPKG_TESTS !== '1') return 'neither CI nor PIOTA_DPKG_TESTS is set (.ci/run sets it)';
  if (run('dpkg-query', ['-W', 'piota']).status === 0) return 'a piota package is already installed on this machine: not touching it';
  if (existsSync('/data/piota') || existsSync('/etc/piota')) return '/data/piota or /etc/piota exists on this machine: not touching it';
  return takeMachineLock();
}

// Two test runs on one machine (two worktrees) must not install the package at the same time.
const LOCK = '/run/lock/piota-dpkg-test.pid';
function takeMachineLock(): string | undefined {
  mkdirSync('/run/lock', { recursive: true });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(LOCK, String(process.pid), { flag: 'wx' });
      return undefined;
    } catch {
      const holder = Number(readFileSync(LOCK, 'utf8'));
      if (holder > 0 && existsSync(`/proc/${holder}`)) return `another test run (PID ${holder}) is installing piota on this machine`;
      rmSync(LOCK, { force: true }); // left by a run that died
    }
  }
  return `could not take ${LOCK}`;
}
const skipReal = realDpkgSkipReason();
if (skipReal) console.warn(`real dpkg install tests skipped: ${skipReal}`);

describe.skipIf(!haveDpkgDeb)('piota .deb', () => {
  let out: string;
  let deb: string;
  let listing: string[];

  beforeAll(async () => {
    out = await mkdtemp(join(tmpdir(), 'piota-deb-'));
    const started = Date.now();
    // Two cores shared with other test files: the build (tsc, npm ci, xz) takes 20-60 s.
    ensureBuilt();
    const stdout = ok(run('bash', [join(repo, 'scripts/build-deb.sh'), '--out', out, '--no-build'], { timeout: 230_000 }));
    deb = stdout.trim().split('\n').pop()!;
    console.log(`built ${deb} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    listing = ok(run('dpkg-deb', ['-c', deb])).trim().split('\n');
  }, 240_000);

  afterAll(async () => {
    await rm(out, { recursive: true, force: true });
  });

  const paths = () => listing.map((l) => l.split(/\s+/).slice(5).join(' ').replace(/^\./, ''));

  it('is named piota_<version>_all.deb and its control fields are right', () => {
    expect(deb).toBe(join(out, `piota_${version}_all.deb`));
    const fields = ok(run('dpkg-deb', ['-f', deb, 'Package', 'Version', 'Architecture', 'Depends']));
    expect(fields).toBe(`Package: piota\nVersion: ${version}\nArchitecture: all\nDepends: nodejs (>= 20)\n`);
    const info = ok(run('dpkg-deb', ['-I', deb]));
    for (const script of ['postinst', 'prerm', 'postrm']) expect(info).toMatch(new RegExp(`\\*\\s+${script}\\s+#!/bin/sh`));
    expect(ok(run('dpkg-deb', ['-I', deb, 'conffiles'])).trim()).toBe('/etc/piota/config.json');
  });

  it('carries the program, its production dependencies, the command, the unit and the config', () => {
    const p = paths();
    for (const expected of [
      '/usr/lib/piota/bin/piota.js', '/usr/lib/piota/dist/cli/main.js', '/usr/lib/piota/package.json',
      '/usr/lib/piota/node_modules/pino/package.json', '/usr/lib/piota/node_modules/azure-iot-device/package.json',
      '/usr/lib/systemd/system/piota.service', '/etc/piota/config.json', '/usr/share/doc/piota/copyright',
      '/usr/share/doc/piota/raspberry-pi.md', '/usr/lib/piota/install.sh',
      '/usr/lib/piota/trial-guard.sh', '/usr/lib/systemd/system/piota-trial-guard.service', '/usr/lib/systemd/system/piota-trial-guard.timer',
      '/usr/lib/systemd/system/piota-provision.service', '/usr/lib/systemd/system-preset/80-piota.preset',
    ]) expect(p).toContain(expected);
    expect(p).toContain('/usr/bin/piota -> ../lib/piota/bin/piota.js');
    // Nothing for development (type declarations included), nothing compiled for one architecture, no source maps.
    for (const devOnly of ['typescript', 'vitest', 'eslint', '@types']) {
      expect(p.filter((x) => x.startsWith(`/usr/lib/piota/node_modules/${devOnly}/`))).toEqual([]);
    }
    expect(p.filter((x) => x.endsWith('.node') || x.endsWith('.map'))).toEqual([]);
    expect(listing.filter((l) => !l.includes(' root/root '))).toEqual([]);
    expect(listing.find((l) => l.endsWith('/usr/lib/piota/bin/piota.js'))).toMatch(/^-rwxr-xr-x/);
    expect(listing.find((l) => l.endsWith('/usr/lib/piota/install.sh'))).toMatch(/^-rwxr-xr-x/);
    expect(listing.find((l) => l.endsWith('/usr/lib/piota/trial-guard.sh'))).toMatch(/^-rwxr-xr-x/);
  });

  it('runs from the extracted tree and prints the package version', async () => {
    const tree = join(out, 'tree');
    ok(run('dpkg-deb', ['-x', deb, tree]));
    expect(ok(run(process.execPath, [join(tree, 'usr/lib/piota/bin/piota.js'), '--version'])).trim()).toBe(version);
    expect(await readFile(join(tree, 'etc/piota/config.json'), 'utf8')).toBe(await readFile(join(repo, 'config.example.json'), 'utf8'));
    // The packaged guard is the script in the repository, and runs (no Node): --dry-run, not a trial.
    expect(await readFile(join(tree, 'usr/lib/piota/trial-guard.sh'), 'utf8')).toBe(await readFile(join(repo, 'scripts/trial-guard.sh'), 'utf8'));
    await writeFile(join(out, 'tryboot'), Buffer.alloc(4));
    const guard = run(join(tree, 'usr/lib/piota/trial-guard.sh'), ['--device-tree', out, '--dry-run']);
    expect({ status: guard.status, stderr: guard.stderr }).toEqual({ status: 0, stderr: 'piota-trial-guard: not a trial boot (tryboot=0): nothing to do\n' });
  });

  describe.skipIf(skipReal !== undefined)('installed with dpkg on this machine', () => {
    let shim: string | undefined;
    let createdData = false;
    let mountedData = false;
    const installedPaths = ['/usr/lib/piota', '/usr/bin/piota', '/usr/lib/systemd/system/piota.service',
      '/usr/lib/systemd/system/piota-trial-guard.service', '/usr/lib/systemd/system/piota-trial-guard.timer',
      '/usr/lib/systemd/system/piota-provision.service', '/usr/lib/systemd/system-preset/80-piota.preset'];
    const wants = '/etc/systemd/system/multi-user.target.wants/piota.service';
    const provisionWants = '/etc/systemd/system/multi-user.target.wants/piota-provision.service';
    const timerWants = '/etc/systemd/system/timers.target.wants/piota-trial-guard.timer';
    const status = () => run('dpkg-query', ['-W', '-f=${Status} ${Version}', 'piota']);

    // dpkg unpacks and deletes some 10,000 files each time: slow on a busy machine.
    const slow = { timeout: 120_000 };

    beforeAll(async () => {
      // Depends: nodejs (>= 20). Where node did not come from the Debian package, an equivs-style
      // package that provides it stands in, so dpkg checks the dependency instead of being told to ignore it.
      const nodejs = run('dpkg-query', ['-W', '-f=${Status} ${Version}', 'nodejs']).stdout;
      // PIOTA_TEST_NODEJS_SHIM=1 takes this path on a machine that has the package, to check it.
      const satisfied = process.env.PIOTA_TEST_NODEJS_SHIM !== '1' && nodejs.startsWith('install ok installed ')
        && run('dpkg', ['--compare-versions', nodejs.split(' ').pop()!, 'ge', '20']).status === 0;
      if (!satisfied) {
        console.warn(`the Debian package nodejs (>= 20) is not installed (node ${process.versions.node} came from elsewhere): installing a stand-in package that provides nodejs (= ${process.versions.node})`);
        const dir = join(out, 'shim');
        await mkdir(join(dir, 'DEBIAN'), { recursive: true });
        await writeFile(join(dir, 'DEBIAN/control'), [
          'Package: piota-test-nodejs-shim', 'Version: 1.0', 'Architecture: all', 'Maintainer: piota tests <piota@invalid>',
          `Provides: nodejs (= ${process.versions.node})`, 'Description: stands in for the Debian nodejs package in piota CI', '',
        ].join('\n'));
        ok(run('dpkg-deb', ['--root-owner-group', '--build', dir, join(out, 'shim.deb')]));
        ok(run('dpkg', ['-i', join(out, 'shim.deb')]));
        shim = 'piota-test-nodejs-shim';
      }
      if (!existsSync('/data')) {
        await mkdir('/data');
        createdData = true;
      }
    });

    afterAll(async () => {
      // Whatever happened above, leave the machine as it was.
      if (status().status === 0) run('dpkg', ['--purge', 'piota']);
      if (mountedData) run('umount', ['/data']);
      await rm('/data/piota', { recursive: true, force: true });
      if (createdData) await rm('/data', { recursive: true, force: true });
      if (shim) run('dpkg', ['--purge', shim]);
      rmSync(LOCK, { force: true });
    });

    it('installs: /usr/bin/piota runs, the units verify cleanly in place, the service and the guard\'s timer are enabled', slow, () => {
      const r = run('dpkg', ['-i', deb], { env: { DEBIAN_FRONTEND: 'noninteractive' } });
      expect(r.status, r.stderr).toBe(0);
      expect(status().stdout).toBe(`install ok installed ${version}`);
      expect(ok(run('/usr/bin/piota', ['--version'])).trim()).toBe(version);
      const units = ['piota.service', 'piota-provision.service', 'piota-trial-guard.service', 'piota-trial-guard.timer'].map((u) => `/usr/lib/systemd/system/${u}`);
      const verify = run('systemd-analyze', ['verify', ...units]);
      expect({ status: verify.status, stderr: verify.stderr }).toEqual({ status: 0, stderr: '' });
      expect(existsSync(wants)).toBe(true);
      // deb-systemd-helper links to /lib/systemd/system/… where /lib is the merged /usr/lib.
      expect(readlinkSync(timerWants)).toMatch(/^(\/usr)?\/lib\/systemd\/system\/piota-trial-guard\.timer$/);
      expect(existsSync(provisionWants)).toBe(true);
      // The preset names exactly the units the installation enabled (image builders enable what it lists).
      const preset = readFileSync('/usr/lib/systemd/system-preset/80-piota.preset', 'utf8').split('\n')
        .filter((l) => l.startsWith('enable ')).map((l) => l.slice('enable '.length).trim()).sort();
      const enabled = readdirSync('/etc/systemd/system').filter((d) => d.endsWith('.wants'))
        .flatMap((d) => readdirSync(join('/etc/systemd/system', d)).filter((u) => u.startsWith('piota'))).sort();
      expect(enabled).toEqual(preset);
    });

    it('keeps a changed config, the state and a disabled service across an upgrade', slow, async () => {
      ok(run('systemctl', ['disable', 'piota.service']));
      const config = (await readFile('/etc/piota/config.json', 'utf8')).replace('"logLevel": "info"', '"logLevel": "debug"');
      await writeFile('/etc/piota/config.json', config);
      await mkdir('/data/piota', { recursive: true, mode: 0o700 });
      await writeFile('/data/piota/connection-string', CS, { mode: 0o600 });
      const r = run('dpkg', ['-i', deb], { env: { DEBIAN_FRONTEND: 'noninteractive' } });
      expect(r.status, r.stderr).toBe(0);
      expect(await readFile('/etc/piota/config.json', 'utf8')).toBe(config);
      expect(await readFile('/data/piota/connection-string', 'utf8')).toBe(CS);
      expect(existsSync(wants), 'an administrator disabled it: the upgrade must not enable it').toBe(false);
      expect(existsSync(timerWants), 'the guard\'s timer stays enabled').toBe(true);
      ok(run('systemctl', ['enable', 'piota.service']));
    });

    it('remove keeps config and state; purge leaves nothing behind', slow, async () => {
      ok(run('dpkg', ['--remove', 'piota']));
      expect(status().stdout).toBe(`deinstall ok config-files ${version}`);
      for (const p of installedPaths) expect(existsSync(p), p).toBe(false);
      expect(existsSync(wants)).toBe(false);
      expect(existsSync(timerWants)).toBe(false);
      expect(existsSync(provisionWants)).toBe(false);
      // As debhelper's scripts do: a removed package's units are masked until purge or reinstall.
      expect(readlinkSync('/etc/systemd/system/piota.service')).toBe('/dev/null');
      expect(readlinkSync('/etc/systemd/system/piota-trial-guard.timer')).toBe('/dev/null');
      expect(existsSync('/etc/piota/config.json')).toBe(true);
      expect(existsSync('/data/piota/connection-string')).toBe(true);

      // Drop-ins as install.sh writes them for another state directory or autoboot.txt: purge takes them too.
      for (const [dir, file] of [['piota.service.d', 'state-dir.conf'], ['piota.service.d', 'autoboot-file.conf'], ['piota-trial-guard.service.d', 'autoboot-file.conf']]) {
        await mkdir(join('/etc/systemd/system', dir), { recursive: true });
        await writeFile(join('/etc/systemd/system', dir, file), '[Service]\n');
      }
      ok(run('dpkg', ['--purge', 'piota']));
      const gone = status();
      expect(gone.status).not.toBe(0);
      expect(gone.stderr).toMatch(/no packages found matching piota|not installed/);
      for (const p of [...installedPaths, wants, timerWants, '/etc/piota', '/data/piota']) expect(existsSync(p), p).toBe(false);
      expect(readdirSync('/var/lib/dpkg/info').filter((f) => f.startsWith('piota.'))).toEqual([]);
      // No enablement, mask or deb-systemd-helper state left.
      const leftovers = ['/etc/systemd', '/var/lib/systemd'].flatMap((d) => existsSync(d)
        ? readdirSync(d, { recursive: true }).map(String).filter((f) => f.includes('piota')).map((f) => join(d, f)) : []);
      expect(leftovers).toEqual([]);
      expect(run('dpkg', ['-S', '/usr/lib/piota']).status).not.toBe(0);
    });

    it('scripts/install.sh installs the .deb for real, then uninstalls and purges it', slow, async () => {
      // The state directory must not be on the root filesystem: a tmpfs plays the data partition.
      ok(run('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', '/data']));
      mountedData = true;
      const key = join(out, 'vendor.pub');
      const { generateKeyPairSync } = await import('node:crypto');
      const { publicKey } = generateKeyPairSync('ed25519');
      await writeFile(key, publicKey.export({ type: 'spki', format: 'pem' }));
      await chmod(key, 0o644);
      const args = ['--deb', deb, '--model', 'raspberrypi5', '--trusted-key', key, '--connection-string', '-'];
      if (shim) args.push('--force-depends');
      const r = run('bash', [join(repo, 'scripts/install.sh'), ...args], { input: CS });
      expect(r.status, r.stderr).toBe(0);
      expect(status().stdout).toBe(`install ok installed ${version}`);
      expect(ok(run('/usr/bin/piota', ['--version'])).trim()).toBe(version);
      // Stored by key id, computed by the installed piota's own code.
      expect(JSON.parse(await readFile('/etc/piota/config.json', 'utf8')).trustedKeys).toEqual([`/etc/piota/keys/${keyIdOf(publicKey)}.pub`]);
      expect(await readFile('/data/piota/connection-string', 'utf8')).toBe(CS);
      expect(existsSync(wants)).toBe(true);
      expect(existsSync(timerWants)).toBe(true);
      // Again, with the copy the package carries (how a device whose image has piota is provisioned):
      // nothing changes, nothing fails.
      const again = run('bash', ['/usr/lib/piota/install.sh', '--connection-string', '-'], { input: CS });
      expect(again.status, again.stderr).toBe(0);
      expect(again.stdout).toMatch(/keeping the existing/);
      expect(JSON.parse(await readFile('/etc/piota/config.json', 'utf8')).model).toBe('raspberrypi5');

      const u = run('bash', [join(repo, 'scripts/install.sh'), '--uninstall', '--purge']);
      expect(u.status, u.stderr).toBe(0);
      expect(status().status).not.toBe(0);
      for (const p of [...installedPaths, wants, timerWants, '/etc/piota', '/data/piota', '/etc/systemd/system/piota.service',
        '/etc/systemd/system/piota-trial-guard.timer']) expect(existsSync(p), p).toBe(false);
      ok(run('umount', ['/data']));
      mountedData = false;
    });
  });
});
