/**
 * A stand-in for a Raspberry Pi OS (trixie) image, since real ones cannot be downloaded here: an
 * MBR disk image with a FAT boot partition (config.txt, cmdline.txt, a placeholder kernel) and an
 * ext4 root file system made from a Debian trixie root (test/systemd/rig.ts builds and caches it),
 * carrying the same first-boot resize hooks as Raspberry Pi OS trixie: `resize` on the kernel
 * command line (the initramfs grows the partition) and rpi-resize.service enabled in
 * sysinit.target (systemd grows the file system), so that their removal by `piota image convert`
 * is tested.
 *
 * Built once per cache (CACHE_DIR) and arch, and handed out read-only: copy it before writing.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CACHE_DIR, TRIXIE_WITH_NODE, ensureRoot, type RootSpec } from '../systemd/rig.js';

const MiB = 1024 * 1024;
/** Where the first partition starts, as in Raspberry Pi OS images (8192 sectors). */
const FIRST_SECTOR = 8192;
const BOOT_MIB = 64;
/** The disk identifier of every stand-in (Raspberry Pi OS images each have their own fixed one). */
export const STANDIN_DISK_ID = '0x5e1f0a11';
const BUILDER_VERSION = 2;

/** The Debian architecture of this machine (amd64, arm64...). */
export function hostArch(): string {
  const r = spawnSync('dpkg', ['--print-architecture'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : process.arch === 'x64' ? 'amd64' : process.arch;
}

/** The root file system spec of a stand-in: the rig's trixie root, plus ca-certificates. */
export function standinRootSpec(arch = hostArch()): RootSpec {
  const packages = [...TRIXIE_WITH_NODE.packages, 'ca-certificates'];
  if (arch === hostArch()) return { ...TRIXIE_WITH_NODE, packages };
  // A foreign architecture is only unpacked (no maintainer scripts, no emulator): convert and
  // inspect it, never boot it.
  return { ...TRIXIE_WITH_NODE, variant: 'extract', packages, arch };
}

const TOOLS = ['sfdisk', 'mkfs.vfat', 'mcopy', 'mkfs.ext4', 'losetup', 'mount', 'umount', 'mmdebstrap'];

/** Why a stand-in image cannot be built here, or undefined when it can. */
export function standinSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root (loop devices and mmdebstrap --mode=root need root)';
  for (const tool of TOOLS) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is missing (see .ci/run)`;
  }
  return undefined;
}

const CONFIG_TXT = `# For more options and information see
# http://rptl.io/configtxt
# Some settings may impact device functionality. See link above for details

dtparam=audio=on
camera_auto_detect=1
display_auto_detect=1
auto_initramfs=1
dtoverlay=vc4-kms-v3d
max_framebuffers=2
disable_fw_kms_setup=1
arm_64bit=1
disable_overscan=1
arm_boost=1

[cm4]
otg_mode=1

[cm5]
dtoverlay=dwc2,dr_mode=host
`;

// As in Raspberry Pi OS trixie's images: one line, `resize` asks the initramfs to grow the root.
const cmdline = (diskId: string) =>
  `console=serial0,115200 console=tty1 root=PARTUUID=${diskId.slice(2)}-02 rootfstype=ext4 fsck.repair=yes rootwait resize\n`;

const fstab = (diskId: string) => `proc            /proc           proc    defaults          0       0
PARTUUID=${diskId.slice(2)}-01  /boot/firmware  vfat    defaults          0       2
PARTUUID=${diskId.slice(2)}-02  /               ext4    defaults,noatime  0       1
`;

// raspberrypi-sys-mods' unit (trixie), with a harmless command: it is the enabling symlink that
// matters for the test.
const RPI_RESIZE_UNIT = `[Unit]
Description=Grow and trim root filesystem on first boot
Before=first-boot-complete.target fstrim.service
After=systemd-remount-fs.service systemd-growfs-root.service
Wants=first-boot-complete.target systemd-growfs-root.service fstrim.service
ConditionFirstBoot=yes
DefaultDependencies=no
Conflicts=shutdown.target
Before=shutdown.target

[Service]
Type=oneshot
ExecStart=/usr/bin/true
ExecStartPost=/usr/bin/systemctl disable %n
RemainAfterExit=yes

[Install]
WantedBy=sysinit.target
`;

function run(command: string, args: readonly string[]): string {
  const r = spawnSync(command, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (exit ${r.status}): ${r.stderr || r.error?.message}`);
  return r.stdout;
}

function duMiB(dir: string): number {
  return Math.ceil(Number(run('du', ['-sxk', dir]).split('\t')[0]) / 1024);
}

/**
 * The path of a cached, read-only stand-in image for `arch` (the host's by default), built now if
 * it is not in the cache yet (about 40 s for the root, a few seconds for the image).
 */
export async function standinImage(arch = hostArch()): Promise<string> {
  const spec = standinRootSpec(arch);
  const key = createHash('sha256').update(JSON.stringify({ v: BUILDER_VERSION, spec, CONFIG_TXT, RPI_RESIZE_UNIT })).digest('hex').slice(0, 12);
  const image = join(CACHE_DIR, `standin-raspios-${arch}-${key}.img`);
  if (existsSync(image)) return image;

  const { root } = await ensureRoot(spec);
  await mkdir(CACHE_DIR, { recursive: true });
  const work = await mkdtemp(join(CACHE_DIR, 'standin-building-'));
  const loops: string[] = [];
  const mounted: string[] = [];
  try {
    const partial = join(work, 'image.img');
    // The root partition just big enough: what the root holds, plus room for ext4's metadata
    // and for the converter's additions (piota is about 40 MiB).
    const rootMiB = Math.ceil(duMiB(root) * 1.15) + 96;
    const totalMiB = FIRST_SECTOR / 2048 + BOOT_MIB + rootMiB;
    run('truncate', ['-s', `${totalMiB}M`, partial]);
    const script = `label: dos\nlabel-id: ${STANDIN_DISK_ID}\nstart=${FIRST_SECTOR}, size=${BOOT_MIB}MiB, type=c\nstart=${FIRST_SECTOR + BOOT_MIB * 2048}, type=83\n`;
    const r = spawnSync('sfdisk', ['--no-reread', '--no-tell-kernel', partial], { input: script, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`sfdisk failed: ${r.stderr}`);
    const bootStart = FIRST_SECTOR * 512;
    const rootStart = bootStart + BOOT_MIB * MiB;
    const rootBytes = totalMiB * MiB - rootStart;
    // Raspberry Pi OS labels them bootfs and rootfs.
    const bootLoop = run('losetup', ['--find', '--show', '--offset', String(bootStart), '--sizelimit', String(BOOT_MIB * MiB), partial]).trim();
    loops.push(bootLoop);
    run('mkfs.vfat', ['-F', '32', '-n', 'bootfs', bootLoop]);
    const rootLoop = run('losetup', ['--find', '--show', '--offset', String(rootStart), '--sizelimit', String(rootBytes), partial]).trim();
    loops.push(rootLoop);
    run('mkfs.ext4', ['-q', '-L', 'rootfs', '-d', root, rootLoop]);

    const mnt = join(work, 'mnt');
    await mkdir(mnt);
    run('mount', [rootLoop, mnt]);
    mounted.push(mnt);
    await mkdir(join(mnt, 'boot/firmware'), { recursive: true });
    await writeFile(join(mnt, 'etc/fstab'), fstab(STANDIN_DISK_ID));
    await writeFile(join(mnt, 'usr/lib/systemd/system/rpi-resize.service'), RPI_RESIZE_UNIT);
    await mkdir(join(mnt, 'etc/systemd/system/sysinit.target.wants'), { recursive: true });
    run('ln', ['-sf', '/usr/lib/systemd/system/rpi-resize.service', join(mnt, 'etc/systemd/system/sysinit.target.wants/rpi-resize.service')]);
    await writeFile(join(mnt, 'etc/hostname'), 'raspberrypi\n');
    run('umount', [mnt]);
    mounted.pop();

    // This kernel may have no vfat driver: the FAT files go in with mtools, no mount needed.
    const files: Record<string, string | Buffer> = {
      'config.txt': CONFIG_TXT,
      'cmdline.txt': cmdline(STANDIN_DISK_ID),
      // Placeholders of what the firmware loads; the converter copies the partition as it is.
      'kernel8.img': Buffer.alloc(256 * 1024, 0x4b),
      'start4.elf': Buffer.alloc(64 * 1024, 0x53),
    };
    for (const [name, data] of Object.entries(files)) {
      await writeFile(join(work, name), data);
      run('mcopy', ['-o', '-i', `${partial}@@${bootStart}`, join(work, name), `::/${name}`]);
    }
    for (const l of loops.splice(0)) run('losetup', ['-d', l]);

    await chmod(partial, 0o444);
    try {
      await rename(partial, image);
    } catch (err) {
      if (!existsSync(image)) throw err; // another run finished first: use its image
    }
    return image;
  } finally {
    for (const m of mounted.reverse()) spawnSync('umount', [m]);
    for (const l of loops) spawnSync('losetup', ['-d', l]);
    await rm(work, { recursive: true, force: true });
  }
}
