import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, readFile, realpath, rename, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { serializeAutoboot } from '../boot/autoboot.js';
import { writeFileDurably } from '../os/durable-file.js';
import { CMDLINE_FILE, slotCmdline, slotConfigTxt } from './boot-files.js';
import { copyRange } from './byte-copy.js';
import { unpackDeb } from './deb-unpack.js';
import { writeFat } from './fat-files.js';
import { writeFleetConfig, type FleetFlags } from './fleet-config.js';
import { ImageError } from './image-error.js';
import { readInputImage } from './input-image.js';
import { PARTITION_OF, SLOTS, partitionOf, planLayout, sfdiskScript, type LayoutSizes, type SlotName } from './layout.js';
import { partUuid } from './mbr.js';
import { requireNode } from './node-check.js';
import { dirReader, ext4Reader } from './root-reader.js';
import { removeResizeHooks, slotFstab, writeWatchdogConf } from './root-files.js';
import { missingTools, runTool } from './run-tool.js';
import { Scratch } from './scratch.js';
import { enableUnits, unitsToEnable } from './units.js';

export interface ConvertOptions {
  input: string;
  out: string;
  /** The piota package (scripts/build-deb.sh). */
  deb: string;
  /** More packages for the image's architecture, installed first (Node.js and what it needs). */
  installDebs: string[];
  sizes: LayoutSizes;
  fleet: FleetFlags;
  /** Written to /etc/piota-release, the version piota reports for the image. */
  version?: string;
  /** 8 hex digits; random when absent. */
  diskId?: string;
}

export interface ConvertResult {
  out: string;
  diskId: string;
  removedResizeHooks: string[];
  enabled: string[];
  packages: string[];
  node: string;
}

/** Host tools convert needs, with their Debian packages. */
export const CONVERT_TOOLS: Record<string, string> = {
  sfdisk: 'fdisk',
  losetup: 'mount',
  mount: 'mount',
  'mkfs.vfat': 'dosfstools',
  mcopy: 'mtools',
  mtype: 'mtools',
  'mkfs.ext4': 'e2fsprogs',
  e2fsck: 'e2fsprogs',
  resize2fs: 'e2fsprogs',
  e2image: 'e2fsprogs',
  'dpkg-deb': 'dpkg',
  debugfs: 'e2fsprogs',
  bash: 'bash',
};

/** Says up front what convert needs of the host: root, and its tools. */
export function checkHost(): void {
  if (process.getuid?.() !== 0) {
    throw new ImageError('host', 'piota image convert needs root: it attaches loop devices and mounts the root file systems (run it with sudo); the input is only read');
  }
  const missing = missingTools(CONVERT_TOOLS);
  if (missing.length > 0) throw new ImageError('host', `piota image convert needs these host tools: ${missing.join(', ')}`);
}

async function fsck(dev: string): Promise<void> {
  // e2fsck exits 1 when it fixed something (a copied file system's orphan list, say): fine.
  const r = await runTool('e2fsck', ['-f', '-y', dev], { allowFailure: true });
  if (r.code > 1) throw new ImageError('failed', `e2fsck ${dev} found errors it could not fix (exit ${r.code}): ${r.stderr.trim().split('\n').pop()}`);
}

/**
 * Turns a Raspberry Pi OS image into the A/B tryboot image of docs/image.md, step by step. The
 * input is opened read-only; the output is written as OUT.partial beside OUT and renamed over it
 * only when complete. Every loop device and mount is released on every exit path.
 */
export async function convertImage(o: ConvertOptions, log: (line: string) => void): Promise<ConvertResult> {
  checkHost();
  const input = await realpath(o.input).catch(() => {
    throw new ImageError('refused', `${o.input}: no such file`);
  });
  const out = resolve(o.out);
  if (input === out || (await realpath(out).catch(() => undefined)) === input) throw new ImageError('refused', `--out ${o.out} is the input: convert never writes to its input`);
  for (const f of [o.deb, ...o.installDebs, ...o.fleet.trustedKeys, o.fleet.hubCa, o.fleet.downloadCa]) {
    if (f !== undefined && !(await stat(f).then((s) => s.isFile(), () => false))) throw new ImageError('refused', `${f}: no such file`);
  }
  if (o.diskId !== undefined && !/^[0-9a-f]{8}$/.test(o.diskId)) throw new ImageError('refused', `--disk-id ${o.diskId}: expected 8 hex digits`);

  const image = await readInputImage(input);
  log(`input ${input}: disk ${image.table.diskId}, boot partition ${mib(image.boot.size)}, root file system ${mib(image.rootFsBytes)}`);
  if (image.boot.size > o.sizes.boot) throw new ImageError('refused', `the input's boot partition (${mib(image.boot.size)}) does not fit --boot-size ${mib(o.sizes.boot)}`);
  if (image.rootFsBytes > o.sizes.root) throw new ImageError('refused', `the input's root file system (${mib(image.rootFsBytes)}) does not fit --root-size ${mib(o.sizes.root)}`);

  // Without extra packages the input's own Node.js decides, before anything is written.
  if (o.installDebs.length === 0) await requireNode(ext4Reader(input, image.root.start));

  const layout = planLayout(o.sizes);
  const diskId = o.diskId ?? randomBytes(4).toString('hex');
  const uuid = (n: number) => partUuid(diskId, n);
  const partial = join(dirname(out), `.${basename(out)}.partial`);
  const scratch = new Scratch();
  const stopSignals = scratch.releaseOnSignals();
  scratch.onAbort(() => rm(partial, { force: true }));
  try {
    await rm(partial, { force: true });
    await writeFile(partial, '');
    await truncate(partial, layout.total);
    await runTool('sfdisk', ['--no-reread', '--no-tell-kernel', partial], { input: sfdiskScript(layout, diskId) });
    log(`output ${out}: ${mib(layout.total)}, disk ${diskId}, 7 partitions (docs/raspberry-pi.md)`);
    const loopOf = (role: Parameters<typeof partitionOf>[1]) => {
      const p = partitionOf(layout, role);
      return scratch.loop(partial, p.start, p.size, true);
    };

    // 1: bootconfig, with autoboot.txt: slot A committed, B for a trial.
    await runTool('mkfs.vfat', ['-F', '32', '-n', 'BOOTCFG', await loopOf('bootconfig')]);
    const bootconfig = { image: partial, offset: partitionOf(layout, 'bootconfig').start };
    await writeFat(bootconfig, 'autoboot.txt', serializeAutoboot({ bootPartition: SLOTS.A.boot, trybootPartition: SLOTS.B.boot }));

    // 2, 3: one boot image for both slots; config.txt picks each slot's command line.
    const bootA = partitionOf(layout, 'bootA');
    await copyRange(input, image.boot.start, partial, bootA.start, image.boot.size);
    const vol = { image: partial, offset: bootA.start };
    const a = slotCmdline(image.cmdline, uuid(SLOTS.A.root));
    const b = slotCmdline(image.cmdline, uuid(SLOTS.B.root));
    await writeFat(vol, CMDLINE_FILE.A, a.text);
    await writeFat(vol, CMDLINE_FILE.B, b.text);
    // Firmware without the [boot_partition] filter reads cmdline.txt: slot A, the committed one.
    await writeFat(vol, 'cmdline.txt', a.text);
    await writeFat(vol, 'config.txt', slotConfigTxt(image.configTxt, { A: SLOTS.A.boot, B: SLOTS.B.boot }));
    await copyRange(partial, bootA.start, partial, partitionOf(layout, 'bootB').start, bootA.size);
    log(`boot A and B: ${CMDLINE_FILE.A} root=PARTUUID=${uuid(SLOTS.A.root)}, ${CMDLINE_FILE.B} root=PARTUUID=${uuid(SLOTS.B.root)}${a.removed.length ? `; removed ${a.removed.join(' ')}` : ''}`);

    // 7: data, with piota's state directory and the journal.
    const dataDev = await loopOf('data');
    await runTool('mkfs.ext4', ['-q', '-L', 'data', dataDev]);

    // 5: root A from the input's root file system, grown to its partition.
    const rootADev = await loopOf('rootA');
    await runTool('e2image', ['-ra', '-o', String(image.root.start), input, rootADev]);
    await fsck(rootADev);
    await runTool('resize2fs', [rootADev]);
    const work = await scratch.tempDir(dirname(out), `.piota-convert-`);
    const root = await scratch.mount(rootADev, join(work, 'root'));
    const removed = await removeResizeHooks(root);
    log(`root A: resize hooks removed: ${[...a.removed, ...removed].join(', ') || 'none found'}`);
    await writeWatchdogConf(root);
    for (const dir of ['boot/firmware', 'boot/bootconfig']) await mkdir(join(root, dir), { recursive: true });

    const packages: string[] = [];
    for (const deb of o.installDebs) {
      const p = await unpackDeb(deb, root, scratch, work);
      packages.push(`${p.name} ${p.version} (${p.architecture})`);
      log(`installed ${p.name} ${p.version} (${p.architecture}) from ${deb}${p.scripts.length ? `; its ${p.scripts.join(', ')} not run` : ''}`);
    }
    if (o.installDebs.length > 0) await ldconfig(root, log);
    const node = await requireNode(dirReader(root));
    log(`Node.js ${node.version} (${node.source})`);
    const piota = await unpackDeb(o.deb, root, scratch, work);
    if (piota.name !== 'piota') throw new ImageError('refused', `--deb ${o.deb}: the package '${piota.name}', not piota`);
    packages.push(`piota ${piota.version}`);
    log(`installed piota ${piota.version} from ${o.deb} (unpacked; its postinst's work done below)`);
    if (o.version !== undefined) await writeFileDurably(join(root, 'etc/piota-release'), `${o.version}\n`);

    const data = await scratch.mount(dataDev, join(root, 'data'));
    await writeFleetConfig(root, o.fleet, log);
    await prepareData(root, data);
    const { units, from } = await unitsToEnable(dirReader(root));
    const links = await enableUnits(root, units);
    log(`enabled ${units.join(', ')} (from ${from}): ${links.map((l) => '/' + l).join(', ')}`);
    await writeFileDurably(join(root, 'etc/fstab'), slotFstab((await readFile(join(root, 'etc/fstab'), 'utf8').catch(() => '')), mountsOf(uuid, 'A')));
    await scratch.unmount(data);
    await scratch.unmount(root);
    await fsck(rootADev);

    // 6: root B, a copy of A with its own fstab.
    const rootBDev = await loopOf('rootB');
    await runTool('e2image', ['-ra', rootADev, rootBDev]);
    const rootB = await scratch.mount(rootBDev, join(work, 'root-b'));
    await writeFileDurably(join(rootB, 'etc/fstab'), slotFstab((await readFile(join(rootB, 'etc/fstab'), 'utf8')), mountsOf(uuid, 'B')));
    await scratch.unmount(rootB);
    log('root B: a copy of root A, with its own fstab');

    await scratch.release();
    await rename(partial, out);
    return { out, diskId, removedResizeHooks: [...a.removed, ...removed], enabled: units, packages, node: node.version };
  } catch (err) {
    await scratch.release();
    await rm(partial, { force: true });
    throw err;
  } finally {
    stopSignals();
  }
}

function mountsOf(uuid: (n: number) => string, slot: SlotName) {
  return { root: uuid(SLOTS[slot].root), boot: uuid(SLOTS[slot].boot), bootconfig: uuid(PARTITION_OF.bootconfig), data: uuid(PARTITION_OF.data) };
}

/** The data partition's directories: piota's state (0700, install.sh made it) and the journal. */
async function prepareData(root: string, data: string): Promise<void> {
  // journald's directory: root:systemd-journal 2755, with the group id of the image's own group file.
  const group = await readFile(join(root, 'etc/group'), 'utf8').catch(() => '');
  const gid = Number(/^systemd-journal:[^:]*:(\d+):/m.exec(group)?.[1] ?? 0);
  await mkdir(join(data, 'journal'), { recursive: true });
  await chown(join(data, 'journal'), 0, gid);
  await chmod(join(data, 'journal'), 0o2755);
}

/**
 * Libraries unpacked without their triggers need the dynamic linker's cache rebuilt. The host's
 * ldconfig does that for the image (-r: it only reads the image's files, whatever their
 * architecture, and runs none of them).
 */
async function ldconfig(root: string, log: (line: string) => void): Promise<void> {
  const r = await runTool('ldconfig', ['-r', root], { allowFailure: true });
  log(r.code === 0 ? 'rebuilt the image\'s /etc/ld.so.cache (host ldconfig -r)' : `warning: ldconfig -r failed (${r.stderr.trim().split('\n').pop()}); the image's linker cache may miss the new libraries`);
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(bytes % (1024 * 1024) === 0 ? 0 : 1)} MiB`;
}

