import { parseAutoboot } from '../boot/autoboot.js';
import { validateConfig } from '../agent/config.js';
import { CMDLINE_FILE, cmdlineArgs, effectiveCmdlineFile, isResizeArg, rootArg } from './boot-files.js';
import { readFat } from './fat-files.js';
import { ext4Size } from './input-image.js';
import { PARTITION_OF, SLOTS, type Role, type SlotName } from './layout.js';
import { isExtended, isFat, partUuid, readMbr } from './mbr.js';
import { findNode } from './node-check.js';
import { findResizeHooks } from './root-files.js';
import { ext4Reader, readText, type RootReader } from './root-reader.js';
import { unitsToEnable } from './units.js';

export interface InspectedPartition {
  number: number;
  type: string;
  start: number;
  size: number;
  partUuid: string;
  role?: Role;
}

export interface InspectedSlot {
  bootPartition: number;
  rootPartition: number;
  /** The command-line file the firmware reads for this slot, and the root= it names. */
  cmdlineFile: string | null;
  root: string | null;
  /** What the slot's fstab mounts at / and /boot/firmware. */
  fstabRoot: string | null;
  fstabBoot: string | null;
  resizeHooks: string[];
  release: string | null;
  piotaVersion: string | null;
  node: string | null;
  enabledUnits: string[];
}

export interface InspectReport {
  image: string;
  diskId: string;
  layout: 'ab' | 'other';
  partitions: InspectedPartition[];
  autoboot: { committed: number; tryboot: number | null } | null;
  slots: Partial<Record<SlotName, InspectedSlot>>;
  /** Slot A's /etc/piota/config.json, as parsed (null when absent or not JSON). */
  config: Record<string, unknown> | null;
  connectionStringBaked: boolean;
  problems: string[];
}

const AB_TYPES: Record<number, (t: number) => boolean> = {
  1: isFat,
  2: isFat,
  3: isFat,
  4: isExtended,
  5: (t) => t === 0x83,
  6: (t) => t === 0x83,
  7: (t) => t === 0x83,
};

const ROLE_OF = Object.fromEntries(Object.entries(PARTITION_OF).map(([role, n]) => [n, role as Role]));

/** The mount point of a line in fstab for `where`, as `source`, or null. */
function fstabSource(fstab: string, where: string): string | null {
  for (const line of fstab.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (!line.trim().startsWith('#') && f[1] === where) return f[0] ?? null;
  }
  return null;
}

/**
 * Everything `piota image inspect` says about an image, read without root and without writing:
 * the partition table, autoboot.txt, each slot's command line, fstab, resize hooks, piota and its
 * config, and a list of problems (empty for a clean image). An image whose partition table cannot
 * be read throws an ImageError (exit 2).
 */
export async function inspectImage(path: string): Promise<InspectReport> {
  const table = await readMbr(path);
  const problems: string[] = [];
  const partitions: InspectedPartition[] = table.partitions.map((p) => ({
    number: p.number,
    type: p.type.toString(16).padStart(2, '0'),
    start: p.start,
    size: p.size,
    partUuid: partUuid(table.diskId, p.number),
    role: ROLE_OF[p.number] ?? (p.number === 4 ? ('extended' as const) : undefined),
  }));
  const isAb = table.partitions.length === 7 && table.partitions.every((p) => AB_TYPES[p.number]?.(p.type));
  if (!isAb) for (const p of partitions) p.role = undefined;
  const report: InspectReport = { image: path, diskId: table.diskId, layout: isAb ? 'ab' : 'other', partitions, autoboot: null, slots: {}, config: null, connectionStringBaked: false, problems };
  if (!isAb) {
    problems.push(`not the A/B layout of docs/raspberry-pi.md (partitions ${partitions.map((p) => `${p.number}:${p.type}`).join(' ')}; expected 1-3 FAT, 4 extended, 5-7 Linux): convert it with piota image convert`);
    return report;
  }
  const at = (n: number) => table.partitions.find((p) => p.number === n)!;

  const autoboot = await readFat({ image: path, offset: at(PARTITION_OF.bootconfig).start }, 'autoboot.txt');
  if (autoboot === undefined) problems.push('the bootconfig partition (1) has no autoboot.txt: the bootloader would not boot A/B');
  else {
    try {
      const a = parseAutoboot(autoboot.toString('utf8'), 'autoboot.txt');
      report.autoboot = { committed: a.bootPartition, tryboot: a.trybootPartition };
      if (a.bootPartition !== SLOTS.A.boot && a.bootPartition !== SLOTS.B.boot) problems.push(`autoboot.txt boots partition ${a.bootPartition}, which is neither slot's boot partition (2, 3)`);
    } catch (err) {
      problems.push((err as Error).message);
    }
  }

  for (const slot of ['A', 'B'] as const) {
    report.slots[slot] = await inspectSlot(path, table.diskId, slot, at, problems);
  }
  const rootA = ext4Reader(path, at(SLOTS.A.root).start);
  report.config = await inspectConfig(rootA, problems);
  const data = ext4Reader(path, at(PARTITION_OF.data).start);
  const stateDir = typeof report.config?.stateDir === 'string' ? report.config.stateDir : '/data/piota';
  if (stateDir.startsWith('/data/')) {
    report.connectionStringBaked = (await data.read(`${stateDir.slice('/data'.length)}/connection-string`)) !== undefined;
  }
  if ((await ext4Size(path, at(PARTITION_OF.data).start)) === undefined) problems.push('the data partition (7) holds no ext4 file system');
  return report;
}

async function inspectSlot(
  path: string,
  diskId: string,
  slot: SlotName,
  at: (n: number) => { start: number },
  problems: string[],
): Promise<InspectedSlot> {
  const { boot, root } = SLOTS[slot];
  const other = slot === 'A' ? 'B' : 'A';
  const own = `PARTUUID=${partUuid(diskId, root)}`;
  const s: InspectedSlot = { bootPartition: boot, rootPartition: root, cmdlineFile: null, root: null, fstabRoot: null, fstabBoot: null, resizeHooks: [], release: null, piotaVersion: null, node: null, enabledUnits: [] };

  const vol = { image: path, offset: at(boot).start };
  const configTxt = (await readFat(vol, 'config.txt'))?.toString('utf8');
  if (configTxt === undefined) problems.push(`slot ${slot}: boot partition ${boot} has no config.txt (not a FAT boot partition?)`);
  else {
    s.cmdlineFile = effectiveCmdlineFile(configTxt, boot);
    if (s.cmdlineFile !== CMDLINE_FILE[slot]) problems.push(`slot ${slot}: config.txt makes boot partition ${boot} read ${s.cmdlineFile}, not ${CMDLINE_FILE[slot]} (the [boot_partition=${boot}] block is missing)`);
    const cmdline = (await readFat(vol, s.cmdlineFile))?.toString('utf8');
    if (cmdline === undefined) problems.push(`slot ${slot}: ${s.cmdlineFile} is missing on boot partition ${boot}`);
    else {
      s.root = rootArg(cmdline) ?? null;
      if (s.root === `PARTUUID=${partUuid(diskId, SLOTS[other].root)}`) problems.push(`slot ${slot}: ${s.cmdlineFile} boots slot ${other}'s root (root=${s.root})`);
      else if (s.root !== own) problems.push(`slot ${slot}: ${s.cmdlineFile} has root=${s.root ?? '(none)'}, expected root=${own}`);
      const resize = cmdlineArgs(cmdline).filter(isResizeArg);
      if (resize.length > 0) problems.push(`slot ${slot}: ${s.cmdlineFile} still has the first-boot resize (${resize.join(' ')}): it would grow the wrong partition`);
    }
  }

  if ((await ext4Size(path, at(root).start)) === undefined) {
    problems.push(`slot ${slot}: root partition ${root} holds no ext4 file system`);
    return s;
  }
  const r = ext4Reader(path, at(root).start);
  const fstab = (await readText(r, '/etc/fstab')) ?? '';
  s.fstabRoot = fstabSource(fstab, '/');
  s.fstabBoot = fstabSource(fstab, '/boot/firmware');
  if (s.fstabRoot !== own) problems.push(`slot ${slot}: /etc/fstab mounts ${s.fstabRoot ?? 'nothing'} at /, expected ${own}`);
  if (s.fstabBoot !== `PARTUUID=${partUuid(diskId, boot)}`) problems.push(`slot ${slot}: /etc/fstab mounts ${s.fstabBoot ?? 'nothing'} at /boot/firmware, expected PARTUUID=${partUuid(diskId, boot)}`);
  const shared = [
    ['/data', PARTITION_OF.data],
    ['/boot/bootconfig', PARTITION_OF.bootconfig],
  ] as const;
  for (const [where, n] of shared) {
    const src = fstabSource(fstab, where);
    if (src !== `PARTUUID=${partUuid(diskId, n)}`) problems.push(`slot ${slot}: /etc/fstab mounts ${src ?? 'nothing'} at ${where}, expected PARTUUID=${partUuid(diskId, n)} (partition ${n})`);
  }
  s.resizeHooks = await findResizeHooks(r);
  if ((await r.readlink('/etc/systemd/system/rpi-resize.service')) === '/dev/null') s.resizeHooks = s.resizeHooks.filter((h) => !h.endsWith('/rpi-resize.service'));
  if (s.resizeHooks.length > 0) problems.push(`slot ${slot}: the first-boot resize is still enabled (${s.resizeHooks.join(', ')}): it would grow the wrong partition`);
  s.release = (await readText(r, '/etc/piota-release'))?.split('\n')[0]?.trim() || null;
  const pkg = await readText(r, '/usr/lib/piota/package.json');
  s.piotaVersion = pkg ? ((JSON.parse(pkg) as { version?: string }).version ?? null) : null;
  if (!s.piotaVersion) problems.push(`slot ${slot}: piota is not installed (/usr/lib/piota/package.json missing)`);
  const node = await findNode(r);
  s.node = node?.version ?? null;
  const { units } = await unitsToEnable(r);
  for (const unit of units) {
    // Enabled means a link in each target its [Install] WantedBy= names, as systemctl makes it.
    const unitFile = (await readText(r, `/usr/lib/systemd/system/${unit}`)) ?? (await readText(r, `/etc/systemd/system/${unit}`)) ?? '';
    const targets = [...unitFile.matchAll(/^WantedBy\s*=\s*(.+)$/gm)].flatMap((m) => m[1]!.trim().split(/\s+/));
    const missing = [];
    for (const t of targets) if (!(await r.readlink(`/etc/systemd/system/${t}.wants/${unit}`))) missing.push(`/etc/systemd/system/${t}.wants/${unit}`);
    if (targets.length > 0 && missing.length === 0) s.enabledUnits.push(unit);
    else if (s.piotaVersion) problems.push(`slot ${slot}: ${unit} is not enabled (${targets.length === 0 ? 'no unit file with WantedBy=' : `no ${missing.join(', ')}`})`);
  }
  if (s.piotaVersion && (!node || !(Number(/^(?:\d+:)?(\d+)/.exec(node.version)?.[1]) >= 20))) problems.push(`slot ${slot}: no Node.js 20 or newer (${node ? `${node.version}, ${node.source}` : 'none found'}): piota cannot run`);
  return s;
}

async function inspectConfig(r: RootReader, problems: string[]): Promise<Record<string, unknown> | null> {
  const text = await readText(r, '/etc/piota/config.json');
  if (text === undefined) {
    problems.push('slot A: no /etc/piota/config.json');
    return null;
  }
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(text) as Record<string, unknown>;
  } catch (err) {
    problems.push(`slot A: /etc/piota/config.json is not JSON (${(err as Error).message})`);
    return null;
  }
  try {
    const c = validateConfig(raw);
    if (!c.stateDir.startsWith('/data/')) problems.push(`config: stateDir ${c.stateDir} is not on the data partition (/data): an update would erase it`);
    if (c.trustedKeys.length === 0) problems.push('config: no trustedKeys: the device can never install an update');
    for (const k of c.trustedKeys) if ((await r.read(k)) === undefined) problems.push(`config: trusted key ${k} is missing in the image`);
    for (const [field, file] of [['hubCaFile', c.hubCaFile], ['downloadCaFile', c.downloadCaFile]] as const) {
      if (file && (await r.read(file)) === undefined) problems.push(`config: ${field} ${file} is missing in the image`);
    }
    for (const slot of ['A', 'B'] as const) {
      const dev = c.slots[slot]?.rootfs ?? '';
      if (!dev.endsWith(String(SLOTS[slot].root))) problems.push(`config: slots.${slot}.rootfs is ${dev || 'missing'}, not partition ${SLOTS[slot].root}`);
    }
  } catch (err) {
    problems.push(`config: ${(err as Error).message}`);
  }
  return raw;
}

