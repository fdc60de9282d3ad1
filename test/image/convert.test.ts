import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { standinImage } from '../helpers/standin-image.js';
import {
  buildDeb, byteStart, debugfs, ext4File, ext4Link, fatFile, imageSkipReason, keysAndCa, loopsOn, partitionTable,
  piota, run, sha256File, sha256Range, type Ran, type TablePartition,
} from './fixtures.js';

// One conversion of the stand-in Raspberry Pi OS image with every fleet flag, checked from the
// outside: sfdisk for the table, mtools for the FAT files, debugfs for the ext4 ones.
const skip = imageSkipReason();
const WINDOW = '{"cron":"0 2 * * *","durationMinutes":120,"timeZone":"Europe/Berlin"}';

describe.skipIf(skip)(`piota image convert, inspect and bundle${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let work: string;
  let input: string;
  let inputHash: string;
  let out: string;
  let keys: ReturnType<typeof keysAndCa>;
  let converted: Ran;
  let table: ReturnType<typeof partitionTable>;
  const part = (n: number): TablePartition => table.partitions[n - 1]!;

  beforeAll(async () => {
    input = await standinImage();
    inputHash = sha256File(input);
    work = await mkdtemp(join(tmpdir(), 'piota-image-'));
    keys = keysAndCa(work);
    const deb = buildDeb();
    out = join(work, 'fleet.img');
    converted = piota([
      'image', 'convert', input, '--out', out, '--deb', deb, '--model', 'raspberrypi5', '--trusted-key', keys.pub,
      '--hub-ca', keys.ca, '--download-ca', keys.ca, '--maintenance-window', WINDOW, '--version', '2026.11.1',
      '--boot-size', '64M', '--root-size', '512M', '--data-size', '32M', '--disk-id', '0x1234abcd',
    ]);
    if (converted.status === 0) table = partitionTable(out);
  }, 600_000);

  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('converts, leaves the input as it was and no loop device behind', () => {
    expect(converted.stderr).toBe('');
    expect(converted.status).toBe(0);
    expect(converted.stdout).toContain(`converted: ${out}`);
    expect(sha256File(input)).toBe(inputHash);
    expect(loopsOn(out)).toEqual([]);
    expect(loopsOn(input)).toEqual([]);
    expect(existsSync(join(work, '.fleet.img.partial'))).toBe(false);
  });

  it('lays out the A/B tryboot partitions; autoboot.txt commits A and tries B', () => {
    expect(table.id).toBe('1234abcd');
    expect(table.partitions.map((p) => p.type)).toEqual(['c', 'c', 'c', '5', '83', '83', '83']);
    expect(part(2).size).toBe((64 * 1024 * 1024) / 512);
    expect(part(5).size).toBe((512 * 1024 * 1024) / 512);
    const autoboot = fatFile(out, part(1), 'autoboot.txt')!;
    expect(autoboot).toMatch(/\[all\]\ntryboot_a_b=1\nboot_partition=2\n\[tryboot\]\nboot_partition=3\n/);
  });

  it("each slot's boot partition makes the firmware read a command line naming that slot's own root", () => {
    for (const [boot, file, root] of [[2, 'cmdline-a.txt', 5], [3, 'cmdline-b.txt', 6]] as const) {
      const config = fatFile(out, part(boot), 'config.txt')!;
      expect(config).toContain('dtoverlay=vc4-kms-v3d'); // the image's own settings stay
      expect(config).toMatch(/\[all\]\n\[boot_partition=2\]\ncmdline=cmdline-a\.txt\n\[boot_partition=3\]\ncmdline=cmdline-b\.txt\n\[all\]/);
      const cmdline = fatFile(out, part(boot), file)!;
      expect(cmdline.trim().split(/\s+/)).toContain(`root=PARTUUID=${table.id}-0${root}`);
      expect(cmdline.trim().split(/\s+/)).not.toContain('resize');
      expect(cmdline).toContain('console=serial0,115200');
    }
    // One boot image for both slots, so a boot payload can go to either.
    expect(fatFile(out, part(3), 'cmdline-a.txt')).toBe(fatFile(out, part(2), 'cmdline-a.txt'));
  });

  it("each root's fstab mounts its own root and boot partition, the data and bootconfig partitions; the resize hook is gone", () => {
    for (const [slot, boot] of [[5, 2], [6, 3]] as const) {
      const fstab = ext4File(out, part(slot), '/etc/fstab')!;
      const mounts = new Map(fstab.split('\n').filter((l) => l.trim() && !l.startsWith('#')).map((l) => [l.split(/\s+/)[1], l.split(/\s+/)[0]]));
      expect(mounts.get('/')).toBe(`PARTUUID=${table.id}-0${slot}`);
      expect(mounts.get('/boot/firmware')).toBe(`PARTUUID=${table.id}-0${boot}`);
      expect(mounts.get('/data')).toBe(`PARTUUID=${table.id}-07`);
      expect(mounts.get('/boot/bootconfig')).toBe(`PARTUUID=${table.id}-01`);
      expect(mounts.get('/proc')).toBe('proc'); // the image's other lines stay
      expect(ext4Link(out, part(slot), '/etc/systemd/system/sysinit.target.wants/rpi-resize.service')).toBeUndefined();
      expect(ext4Link(out, part(slot), '/etc/systemd/system/rpi-resize.service')).toBe('/dev/null');
    }
    // The input had it (so the removal above is not vacuous).
    const inTable = partitionTable(input);
    expect(ext4Link(input, inTable.partitions[1]!, '/etc/systemd/system/sysinit.target.wants/rpi-resize.service')).toBe('/usr/lib/systemd/system/rpi-resize.service');
  });

  it('installs piota as dpkg would have, and enables the units its package asks for', () => {
    for (const slot of [5, 6]) {
      const status = ext4File(out, part(slot), '/var/lib/dpkg/status')!;
      expect(status).toMatch(/Package: piota\nStatus: install ok installed\n/);
      expect(status).toMatch(/Conffiles:\n \/etc\/piota\/config\.json [0-9a-f]{32}\n/);
      expect(ext4File(out, part(slot), '/var/lib/dpkg/info/piota.list')).toContain('/usr/lib/piota/bin/piota.js');
      expect(ext4File(out, part(slot), '/var/lib/dpkg/info/piota.postinst')).toContain('deb-systemd-helper');
      const preset = ext4File(out, part(slot), '/usr/lib/systemd/system-preset/80-piota.preset');
      const units = preset ? [...preset.matchAll(/^enable\s+(\S+)/gm)].map((m) => m[1]!) : ['piota.service', 'piota-trial-guard.timer'];
      expect(units).toEqual(expect.arrayContaining(['piota.service', 'piota-trial-guard.timer']));
      for (const unit of units) {
        const unitFile = ext4File(out, part(slot), `/usr/lib/systemd/system/${unit}`)!;
        const target = /^WantedBy=(\S+)/m.exec(unitFile)![1];
        expect(ext4Link(out, part(slot), `/etc/systemd/system/${target}.wants/${unit}`)).toBe(`/usr/lib/systemd/system/${unit}`);
      }
    }
  });

  it('writes the config from the flags, with the key and the CAs, and bakes no connection string', () => {
    const root = part(5);
    const config = JSON.parse(ext4File(out, root, '/etc/piota/config.json')!);
    expect(config).toMatchObject({
      model: 'raspberrypi5',
      stateDir: '/data/piota',
      hubCaFile: '/etc/piota/hub-ca.pem',
      downloadCaFile: '/etc/piota/download-ca.pem',
      maintenanceWindow: JSON.parse(WINDOW),
      slots: { A: { boot: '/dev/mmcblk0p2', rootfs: '/dev/mmcblk0p5' }, B: { boot: '/dev/mmcblk0p3', rootfs: '/dev/mmcblk0p6' } },
      boot: { backend: 'tryboot', bootPartitions: { A: 2, B: 3 }, autobootFile: '/boot/bootconfig/autoboot.txt' },
    });
    expect(config.trustedKeys).toHaveLength(1);
    return Promise.all([readFile(keys.pub, 'utf8'), readFile(keys.ca, 'utf8')]).then(([pub, ca]) => {
      expect(ext4File(out, root, config.trustedKeys[0])).toBe(pub);
      expect(ext4File(out, root, '/etc/piota/hub-ca.pem')).toBe(ca);
      expect(ext4File(out, root, '/etc/piota/download-ca.pem')).toBe(ca);
      expect(ext4File(out, root, '/etc/piota-release')).toBe('2026.11.1\n');
      expect(ext4File(out, part(6), '/etc/piota/config.json')).toBe(ext4File(out, root, '/etc/piota/config.json'));
      // The state directory is on the data partition, private, and holds no connection string.
      expect(debugfs(out, part(7), 'stat /piota').out).toMatch(/Mode:\s+0700/);
      expect(ext4File(out, part(7), '/piota/connection-string')).toBeUndefined();
      expect(converted.stdout).toContain('no connection string baked in');
    });
  });

  it('inspect finds it clean and says what is inside', { timeout: 300_000 }, () => {
    const r = piota(['image', 'inspect', out, '--json']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.problems).toEqual([]);
    expect(report.autoboot).toEqual({ committed: 2, tryboot: 3 });
    expect(report.slots.A).toMatchObject({ cmdlineFile: 'cmdline-a.txt', root: `PARTUUID=${table.id}-05`, release: '2026.11.1', piotaVersion: expect.any(String) });
    expect(report.slots.B).toMatchObject({ cmdlineFile: 'cmdline-b.txt', root: `PARTUUID=${table.id}-06` });
    expect(report.config.model).toBe('raspberrypi5');
    expect(report.connectionStringBaked).toBe(false);
    const text = piota(['image', 'inspect', out]);
    expect(text.status).toBe(0);
    expect(text.stdout).toContain('problems: none');
  });

  it("image bundle makes a bundle that verifies, whose rootfs payload is slot A's root partition byte for byte", { timeout: 600_000 }, async () => {
    const bundle = join(work, 'fw.piota');
    const r = piota(['image', 'bundle', out, '--slot', 'A', '--key', keys.key, '--out', bundle, '--security-version', '3']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const verified = piota(['bundle', 'verify', bundle, '--pubkey', keys.pub, '--model', 'raspberrypi5']);
    expect(verified.stderr).toBe('');
    expect(verified.status).toBe(0);
    const manifest = JSON.parse(piota(['bundle', 'info', bundle, '--json']).stdout);
    const payload = (name: string) => manifest.payloads.find((p: { name: string }) => p.name === name);
    expect(manifest.version).toBe('2026.11.1');
    expect(manifest.securityVersion).toBe(3);
    expect(payload('rootfs').imageSha256).toBe(await sha256Range(out, byteStart(part(5)), part(5).size * 512));
    expect(payload('boot').imageSha256).toBe(await sha256Range(out, byteStart(part(2)), part(2).size * 512));
    // A version other than the slot's /etc/piota-release is refused: the device would report another.
    const wrong = piota(['image', 'bundle', out, '--slot', 'A', '--key', keys.key, '--out', join(work, 'x.piota'), '--version', '9.9.9']);
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toContain("--version 9.9.9, but slot A's /etc/piota-release says 2026.11.1");
    expect(existsSync(join(work, 'x.piota'))).toBe(false);
  });

  it('inspect names what is wrong: a command line booting the other slot, a resize hook, a missing key', { timeout: 300_000 }, async () => {
    const broken = join(work, 'broken.img');
    run('cp', ['--sparse=always', out, broken]);
    const cmdlineB = fatFile(out, part(3), 'cmdline-b.txt')!.replace(`${table.id}-06`, `${table.id}-05`).replace('\n', ' resize\n');
    await writeFile(join(work, 'cmdline-b.txt'), cmdlineB);
    run('mcopy', ['-o', '-i', `${broken}@@${byteStart(part(3))}`, join(work, 'cmdline-b.txt'), '::/cmdline-b.txt']);
    const config = JSON.parse(ext4File(out, part(5), '/etc/piota/config.json')!);
    expect(debugfs(broken, part(5), `rm ${config.trustedKeys[0]}`, true).failed).toBe(false);
    expect(debugfs(broken, part(6), 'symlink /etc/systemd/system/sysinit.target.wants/rpi-resize.service /usr/lib/systemd/system/rpi-resize.service', true).failed).toBe(false);
    expect(debugfs(broken, part(6), 'rm /etc/systemd/system/rpi-resize.service', true).failed).toBe(false);
    const r = piota(['image', 'inspect', broken, '--json']);
    expect(r.status).toBe(1);
    const problems: string[] = JSON.parse(r.stdout).problems;
    expect(problems).toEqual(
      expect.arrayContaining([
        `slot B: cmdline-b.txt boots slot A's root (root=PARTUUID=${table.id}-05)`,
        'slot B: cmdline-b.txt still has the first-boot resize (resize): it would grow the wrong partition',
        'slot B: the first-boot resize is still enabled (/etc/systemd/system/sysinit.target.wants/rpi-resize.service): it would grow the wrong partition',
        `config: trusted key ${config.trustedKeys[0]} is missing in the image`,
      ]),
    );
    expect(problems).toHaveLength(4);
    const text = piota(['image', 'inspect', broken]);
    expect(text.status).toBe(1);
    expect(text.stdout).toContain('problems (4):');
    // A bundle is not made from an image with problems.
    const bundle = piota(['image', 'bundle', broken, '--slot', 'A', '--key', keys.key, '--out', join(work, 'y.piota')]);
    expect(bundle.status).toBe(1);
    expect(bundle.stderr).toContain('not a clean A/B image');
    expect((await stat(broken)).size).toBe((await stat(out)).size);
  });
});
