import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const unitPath = new URL('../../systemd/piota.service', import.meta.url);
const docsPath = new URL('../../docs/raspberry-pi.md', import.meta.url);

const haveAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;
if (!haveAnalyze) console.warn('unit checks skipped: systemd-analyze is not installed (apt install systemd)');

/** The setting lines of a unit, `Key=value`, in order (comments and sections left out). */
function settings(text: string): string[] {
  return text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#') && !l.startsWith('['));
}

describe('systemd/piota.service', () => {
  let unit: string;
  beforeAll(async () => {
    unit = await readFile(unitPath, 'utf8');
  });

  it('is a notify service with watchdog, restart, runtime directory and the contract ExecStart', () => {
    const s = settings(unit);
    for (const line of [
      'Type=notify', 'NotifyAccess=all', 'Restart=on-failure', 'RuntimeDirectory=piota',
      'ExecStart=/usr/bin/piota daemon --config /etc/piota/config.json',
      'Wants=network-online.target', 'After=network-online.target', 'WantedBy=multi-user.target',
      'SyslogLevelPrefix=yes', 'SyslogLevel=err',
    ]) expect(s).toContain(line);
    expect(s.some((l) => /^WatchdogSec=\d+s$/.test(l))).toBe(true);
    expect(s.some((l) => l.startsWith('After=') && l.includes('time-sync.target'))).toBe(false);
  });

  it('is hardened without hiding the block devices or the reboot path', () => {
    const s = settings(unit);
    for (const line of [
      'ProtectSystem=strict', 'NoNewPrivileges=yes', 'PrivateTmp=yes', 'ProtectHome=yes',
      'ReadWritePaths=-/data/piota', 'ReadWritePaths=-/boot/bootconfig', 'ReadWritePaths=/run/systemd',
      'DevicePolicy=closed', 'DeviceAllow=block-mmc rw', 'DeviceAllow=block-sd rw', 'DeviceAllow=block-blkext rw',
    ]) expect(s).toContain(line);
    // Each of these would break the daemon: hidden devices, a JIT that cannot map code, hidden
    // /proc/1 (systemctl would think it runs in a chroot and skip the reboot), hidden device tree.
    for (const key of ['PrivateDevices=', 'MemoryDenyWriteExecute=', 'ProtectProc=', 'ProcSubset=', 'PrivateNetwork=']) {
      expect(s.filter((l) => l.startsWith(key) && !/=(no|false)?$/.test(l))).toEqual([]);
    }
  });

  it('opens /run/systemd itself (reboot-param is written beside it and renamed) but no unit directory below it', () => {
    const s = settings(unit);
    const listed = (key: string) => s.filter((l) => l.startsWith(key)).flatMap((l) => l.slice(key.length).split(/\s+/)).map((p) => p.replace(/^-/, ''));
    expect(listed('ReadWritePaths=')).toEqual(['/data/piota', '/boot/bootconfig', '/run/systemd']);
    const readOnly = listed('ReadOnlyPaths=');
    // Every place systemd loads units from under /run/systemd, as this systemd lists them, when it is here.
    const fromSystemd = haveAnalyze
      ? spawnSync('systemd-analyze', ['unit-paths'], { encoding: 'utf8' }).stdout.split('\n').filter((p) => p.startsWith('/run/systemd/'))
      : [];
    const known = ['/run/systemd/system', '/run/systemd/system.control', '/run/systemd/system.attached', '/run/systemd/transient',
      '/run/systemd/generator', '/run/systemd/generator.early', '/run/systemd/generator.late'];
    for (const dir of new Set([...known, ...fromSystemd])) expect(readOnly, dir).toContain(dir);
    expect(readOnly.every((p) => p.startsWith('/run/systemd/'))).toBe(true);
  });

  describe.skipIf(!haveAnalyze)('systemd-analyze', () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'piota-unit-'));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    /** verify needs ExecStart's program to exist: a copy points it at this node (the real path is checked after dpkg -i in deb.test.ts). */
    async function verify(text: string): Promise<{ status: number | null; stderr: string }> {
      const copy = join(dir, 'piota.service');
      await writeFile(copy, text.replace('ExecStart=/usr/bin/piota ', `ExecStart=${process.execPath} `));
      const r = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8' });
      return { status: r.status, stderr: r.stderr };
    }

    it('verify prints nothing', async () => {
      expect(await verify(unit)).toEqual({ status: 0, stderr: '' });
    });

    it('verify output is a real check (a wrong setting shows on stderr even with exit 0)', async () => {
      const broken = await verify(unit.replace('ProtectSystem=strict', 'ProtectSystem=very'));
      expect(broken.stderr).toMatch(/protect system value.*very/i);
    });

    it('has the security exposure recorded in docs/raspberry-pi.md', async () => {
      await verify(unit); // leaves the unmodified unit (but for ExecStart) in dir/piota.service
      const copy = join(dir, 'piota.service');
      const r = spawnSync('systemd-analyze', ['security', '--offline=true', '--no-pager', copy], { encoding: 'utf8' });
      const measured = /Overall exposure level for piota\.service: ([\d.]+)/.exec(r.stdout)?.[1];
      expect(measured, r.stdout + r.stderr).toBeDefined();
      console.log(`systemd-analyze security --offline=true: exposure ${measured}`);
      expect(Number(measured)).toBeLessThanOrEqual(4);
      const version = /systemd (\d+)/.exec(spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' }).stdout)?.[1];
      const docs = await readFile(docsPath, 'utf8');
      const recorded = [...docs.matchAll(/on systemd (\d+): \*\*([\d.]+)/g)].map((m) => ({ version: m[1], exposure: m[2] }));
      expect(recorded.length, 'docs/raspberry-pi.md records the exposure as "on systemd NNN: **X.Y**"').toBeGreaterThan(0);
      const same = recorded.find((x) => x.version === version);
      if (same) expect(same.exposure).toBe(measured);
      else console.warn(`docs record the exposure for systemd ${recorded.map((x) => x.version).join(', ')}, this is ${version}: not compared`);
    });
  });
});

describe('systemd/piota-provision.service', () => {
  const provisionPath = new URL('../../systemd/piota-provision.service', import.meta.url);
  let unit: string;
  beforeAll(async () => {
    unit = await readFile(provisionPath, 'utf8');
  });

  it('runs piota provision once, before piota.service, only when the file was dropped on the bootconfig partition', () => {
    const s = settings(unit);
    for (const line of [
      'Type=oneshot', 'Before=piota.service', 'WantedBy=multi-user.target',
      'ConditionPathExists=/boot/bootconfig/piota-connection-string.txt', 'RequiresMountsFor=/boot/bootconfig /data',
      'ExecStart=/usr/bin/piota provision --config /etc/piota/config.json --from /boot/bootconfig/piota-connection-string.txt',
      'ProtectSystem=strict', 'ReadWritePaths=-/data', 'ReadWritePaths=/boot/bootconfig', 'PrivateNetwork=yes', 'UMask=0077',
    ]) expect(s).toContain(line);
    // The file name piota provision takes by default is the one the unit waits for.
    const dropped = /^ConditionPathExists=(.*)$/m.exec(unit)![1];
    const help = spawnSync(process.execPath, [new URL('../../bin/piota.js', import.meta.url).pathname, 'provision', '--help'], { encoding: 'utf8' });
    expect(help.stdout).toContain(`default ${dropped}`);
  });

  it.skipIf(!haveAnalyze)('verify prints nothing, and its exposure stays low', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'piota-provision-unit-'));
    try {
      const copy = join(dir, 'piota-provision.service');
      await writeFile(copy, unit.replace('ExecStart=/usr/bin/piota ', `ExecStart=${process.execPath} `));
      const r = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8' });
      expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
      const sec = spawnSync('systemd-analyze', ['security', '--offline=true', '--no-pager', copy], { encoding: 'utf8' });
      const measured = /Overall exposure level for piota-provision\.service: ([\d.]+)/.exec(sec.stdout)?.[1];
      expect(measured, sec.stdout + sec.stderr).toBeDefined();
      console.log(`piota-provision.service: systemd-analyze security --offline=true: exposure ${measured}`);
      expect(Number(measured)).toBeLessThanOrEqual(3);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
