import { BootError } from './backend.js';

/** What piota reads from and writes to a tryboot autoboot.txt. */
export interface AutobootConfig {
  /** `[all] boot_partition`: what every ordinary boot uses. */
  bootPartition: number;
  /** `[tryboot] boot_partition`: what a `0 tryboot` reboot uses once; null when the section is absent. */
  trybootPartition: number | null;
}

/**
 * Every file piota writes has exactly this many bytes, so a rewrite never changes the file's size:
 * on FAT (no atomic rename) the rewrite is then one in-place write of one sector, which an SD card
 * writes whole or not at all. Well under 512 so it stays in the file's first sector.
 */
export const AUTOBOOT_LENGTH = 160;

const HEADER = '# written by piota; rewritten in place at this fixed length\n';

/** The canonical file, padded with a trailing comment to AUTOBOOT_LENGTH bytes. */
export function serializeAutoboot(config: AutobootConfig): string {
  checkPartition(config.bootPartition, 'boot_partition');
  const tryboot = config.trybootPartition ?? config.bootPartition;
  checkPartition(tryboot, 'tryboot boot_partition');
  const body = `${HEADER}[all]\ntryboot_a_b=1\nboot_partition=${config.bootPartition}\n[tryboot]\nboot_partition=${tryboot}\n`;
  const pad = AUTOBOOT_LENGTH - body.length - 2; // '#' and '\n'
  if (pad < 0) throw new BootError('badAutoboot', `autoboot.txt content exceeds ${AUTOBOOT_LENGTH} bytes`);
  return `${body}#${'-'.repeat(pad)}\n`;
}

/**
 * The one rule for a boot partition number, shared by autoboot.txt, the daemon config, the simulator
 * and install.sh (through `piota config check`): 1 to 63, what an MBR with logical partitions numbers.
 */
export const BOOT_PARTITION_MIN = 1;
export const BOOT_PARTITION_MAX = 63;

export function isBootPartitionNumber(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= BOOT_PARTITION_MIN && n <= BOOT_PARTITION_MAX;
}

function checkPartition(n: number, what: string): void {
  if (!isBootPartitionNumber(n)) throw new BootError('badAutoboot', `${what} must be a partition number from ${BOOT_PARTITION_MIN} to ${BOOT_PARTITION_MAX}, got ${n}`);
}

/**
 * Parses autoboot.txt strictly: only what piota can write back faithfully is accepted, so a
 * rewrite never silently drops a setting. `source` names the file in errors.
 * Sections: [all] and [tryboot] (lines before any section belong to [all], as in config.txt).
 * Settings: boot_partition (both), tryboot_a_b (in [all], must be 1). Comments (#) and blank lines.
 */
export function parseAutoboot(text: string, source = 'autoboot.txt'): AutobootConfig {
  if (text.length > 4096) throw new BootError('badAutoboot', `${source}: ${text.length} bytes is too long for an autoboot.txt`);
  const seen: Record<'all' | 'tryboot', Map<string, number>> = { all: new Map(), tryboot: new Map() };
  let section: 'all' | 'tryboot' = 'all';
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  lines.forEach((raw, i) => {
    const where = `${source} line ${i + 1}`;
    const line = raw.replace(/\r$/, '').trim();
    if (line === '' || line.startsWith('#')) return;
    const header = /^\[(.*)\]$/.exec(line);
    if (header) {
      if (header[1] !== 'all' && header[1] !== 'tryboot') {
        throw new BootError('badAutoboot', `${where}: section [${header[1]}] is not supported (piota understands [all] and [tryboot])`);
      }
      section = header[1];
      return;
    }
    const setting = /^([a-z_]+)=(.*)$/.exec(line);
    if (!setting) throw new BootError('badAutoboot', `${where}: expected 'name=value' or '[section]', got '${line}'`);
    const [, key, value] = setting;
    if (key !== 'boot_partition' && key !== 'tryboot_a_b') {
      throw new BootError('badAutoboot', `${where}: unknown setting '${key}' (piota understands boot_partition and tryboot_a_b)`);
    }
    if (key === 'tryboot_a_b' && section !== 'all') throw new BootError('badAutoboot', `${where}: tryboot_a_b belongs in [all]`);
    if (!/^\d{1,3}$/.test(value)) throw new BootError('badAutoboot', `${where}: ${key} must be a whole number, got '${value}'`);
    if (seen[section].has(key)) throw new BootError('badAutoboot', `${where}: ${key} set twice in [${section}]`);
    seen[section].set(key, Number(value));
  });
  const trybootAB = seen.all.get('tryboot_a_b');
  if (trybootAB !== 1) {
    throw new BootError('badAutoboot', `${source}: [all] must set tryboot_a_b=1 for A/B tryboot (${trybootAB === undefined ? 'missing' : `got ${trybootAB}`})`);
  }
  const bootPartition = seen.all.get('boot_partition');
  if (bootPartition === undefined) throw new BootError('badAutoboot', `${source}: [all] has no boot_partition`);
  const trybootPartition = seen.tryboot.get('boot_partition') ?? null;
  for (const [n, what] of [[bootPartition, '[all]'], [trybootPartition, '[tryboot]']] as const) {
    if (n !== null && !isBootPartitionNumber(n)) {
      throw new BootError('badAutoboot', `${source}: ${what} boot_partition ${n} is not a partition number (${BOOT_PARTITION_MIN}-${BOOT_PARTITION_MAX})`);
    }
  }
  return { bootPartition, trybootPartition };
}
