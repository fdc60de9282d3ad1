import { describe, expect, it } from 'vitest';
import { effectiveCmdlineFile, rootArg, slotCmdline, slotConfigTxt } from '../../src/image/boot-files.js';
import { slotFstab } from '../../src/image/root-files.js';
import { planLayout, sfdiskScript } from '../../src/image/layout.js';

describe('boot files of an A/B image', () => {
  it('a slot command line names its root and drops every Raspberry Pi OS resize hook', () => {
    for (const line of [
      'console=serial0,115200 console=tty1 root=PARTUUID=5e1f0a11-02 rootfstype=ext4 fsck.repair=yes rootwait resize', // trixie
      'console=serial0,115200 console=tty1 root=PARTUUID=5e1f0a11-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot', // bookworm
      'console=serial0,115200 console=tty1 root=PARTUUID=5e1f0a11-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspi-config/init_resize.sh', // bullseye
    ]) {
      const { text, removed } = slotCmdline(`${line}\n`, 'abcd0123-06');
      expect(removed).toHaveLength(1);
      expect(text).toMatch(/^console=serial0,115200 console=tty1 root=PARTUUID=abcd0123-06 rootfstype=ext4 fsck\.repair=yes rootwait (quiet )?panic=10\n$/);
      expect(rootArg(text)).toBe('PARTUUID=abcd0123-06');
    }
    // A command line without root= gets one; a second conversion does not add a second panic=.
    expect(slotCmdline(slotCmdline('console=tty1\n', 'x-05').text, 'x-05').text).toBe('console=tty1 root=PARTUUID=x-05 panic=10\n');
  });

  it("config.txt's block makes each boot partition read its own command line, also after board filters", () => {
    const original = 'arm_64bit=1\n[cm5]\ndtoverlay=dwc2,dr_mode=host\n';
    const config = slotConfigTxt(original, { A: 2, B: 3 });
    expect(config.startsWith(original)).toBe(true);
    expect(effectiveCmdlineFile(config, 2)).toBe('cmdline-a.txt');
    expect(effectiveCmdlineFile(config, 3)).toBe('cmdline-b.txt');
    expect(effectiveCmdlineFile(config, 7)).toBe('cmdline.txt');
    expect(effectiveCmdlineFile(original, 2)).toBe('cmdline.txt');
    // Written again (an image converted twice): one block, not two.
    expect(slotConfigTxt(config, { A: 2, B: 3 })).toBe(config);
    // A cmdline= under a board filter is not counted (it depends on the board).
    expect(effectiveCmdlineFile('[pi5]\ncmdline=other.txt\n[all]\n', 2)).toBe('cmdline.txt');
  });

  it("a slot's fstab replaces the image's root and boot lines, keeps the others, drops x-systemd.growfs", () => {
    const fstab = slotFstab(
      'proc /proc proc defaults 0 0\nPARTUUID=5e1f0a11-01 /boot/firmware vfat defaults 0 2\nPARTUUID=5e1f0a11-02 / ext4 defaults,noatime,x-systemd.growfs 0 1\n/dev/sda1 /mnt/usb ext4 defaults,x-systemd.growfs,nofail 0 2\n',
      { root: 'd-05', boot: 'd-02', bootconfig: 'd-01', data: 'd-07' },
    );
    const lines = fstab.split('\n').filter((l) => l && !l.startsWith('#'));
    expect(lines.filter((l) => l.split(/\s+/)[1] === '/')).toEqual(['PARTUUID=d-05  /                 ext4  defaults,noatime  0 1']);
    expect(lines).toContain('proc /proc proc defaults 0 0');
    expect(lines).toContain('/dev/sda1 /mnt/usb ext4 defaults,nofail 0 2');
    expect(fstab).not.toContain('growfs');
    expect(fstab).not.toContain('5e1f0a11');
  });

  it('the layout: 1 MiB aligned partitions, logical ones each after room for their boot record', () => {
    const MiB = 1024 * 1024;
    const layout = planLayout({ bootconfig: 64 * MiB, boot: 512 * MiB, root: 2816 * MiB, data: 512 * MiB });
    expect(layout.partitions.map((p) => p.number)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    for (const p of layout.partitions) expect(p.start % MiB).toBe(0);
    const ext = layout.partitions[3]!;
    expect(ext.start + ext.size).toBe(layout.total);
    expect(layout.partitions[4]!.start).toBe(ext.start + MiB);
    // The defaults fit an 8 GB card (8,000,000,000 bytes; the smallest are a little larger).
    expect(layout.total).toBeLessThan(8_000_000_000);
    expect(sfdiskScript(layout, '1234abcd')).toMatch(/^label: dos\nlabel-id: 0x1234abcd\n/);
    expect(() => planLayout({ bootconfig: 64 * MiB, boot: 512 * MiB + 1, root: MiB, data: MiB })).toThrow('--boot-size must be a whole number of MiB');
  });
});
