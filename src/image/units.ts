import { mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ImageError } from './image-error.js';
import { readText, type RootReader } from './root-reader.js';

/** piota's preset file: when the package ships it, it lists every unit to enable. */
export const PIOTA_PRESET = 'usr/lib/systemd/system-preset/80-piota.preset';
/** What the package's postinst enables when there is no preset file. */
export const DEFAULT_UNITS = ['piota.service', 'piota-trial-guard.timer'];

const UNIT_DIRS = ['etc/systemd/system', 'usr/lib/systemd/system', 'lib/systemd/system'];

/** The units a preset file enables (`enable NAME` lines; globs are not expanded). */
export function presetEnables(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim().split(/\s+/))
    .filter(([verb, name]) => verb === 'enable' && name && !/[*?[]/.test(name))
    .map(([, name]) => name!);
}

/** The units piota's package wants enabled in `root`: from its preset file, else the default list. */
export async function unitsToEnable(root: RootReader): Promise<{ units: string[]; from: string }> {
  const preset = await readText(root, `/${PIOTA_PRESET}`);
  if (preset !== undefined) return { units: presetEnables(preset), from: `/${PIOTA_PRESET}` };
  return { units: DEFAULT_UNITS, from: "the package's maintainer script (no preset file)" };
}

interface Install {
  wantedBy: string[];
  requiredBy: string[];
  alias: string[];
  also: string[];
}

function installSection(text: string): Install {
  const out: Install = { wantedBy: [], requiredBy: [], alias: [], also: [] };
  let inInstall = false;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('[')) inInstall = line === '[Install]';
    const m = /^(WantedBy|RequiredBy|Alias|Also)\s*=\s*(.*)$/.exec(line);
    if (!inInstall || !m) continue;
    const key = ({ WantedBy: 'wantedBy', RequiredBy: 'requiredBy', Alias: 'alias', Also: 'also' } as const)[m[1] as 'WantedBy'];
    out[key].push(...m[2]!.split(/\s+/).filter(Boolean));
  }
  return out;
}

/**
 * Enables units offline the way `systemctl enable` does: a symlink in
 * /etc/systemd/system/<target>.wants (or .requires) for each WantedBy= (RequiredBy=), one per
 * Alias=, and the Also= units too. Also records deb-systemd-helper's state, as the package's
 * postinst would, so that the device's dpkg sees them as enabled on an upgrade.
 * Returns the symlinks made, relative to the root.
 */
export async function enableUnits(root: string, units: readonly string[]): Promise<string[]> {
  const made: string[] = [];
  const done = new Set<string>();
  const enable = async (unit: string) => {
    if (done.has(unit)) return;
    done.add(unit);
    let found: { dir: string; text: string } | undefined;
    for (const dir of UNIT_DIRS) {
      const text = await readFile(join(root, dir, unit), 'utf8').catch(() => undefined);
      if (text !== undefined) {
        found = { dir, text };
        break;
      }
    }
    if (!found) throw new ImageError('failed', `cannot enable ${unit}: no such unit file in the image (${UNIT_DIRS.map((d) => '/' + d).join(', ')})`);
    const target = `/${found.dir === 'lib/systemd/system' ? 'usr/lib/systemd/system' : found.dir}/${unit}`;
    const inst = installSection(found.text);
    const links = [
      ...inst.wantedBy.map((t) => `etc/systemd/system/${t}.wants/${unit}`),
      ...inst.requiredBy.map((t) => `etc/systemd/system/${t}.requires/${unit}`),
      ...inst.alias.map((a) => `etc/systemd/system/${a}`),
    ];
    if (links.length === 0 && inst.also.length === 0) throw new ImageError('failed', `cannot enable ${unit}: its unit file has no [Install] section`);
    for (const link of links) {
      await mkdir(join(root, link, '..'), { recursive: true });
      await rm(join(root, link), { force: true });
      await symlink(target, join(root, link));
      made.push(link);
    }
    // deb-systemd-helper's record: which links belong to the unit, and that it was enabled.
    const state = join(root, 'var/lib/systemd/deb-systemd-helper-enabled');
    await mkdir(state, { recursive: true });
    await writeFile(join(state, `${unit}.dsh-also`), links.map((l) => `/${l}\n`).join(''));
    for (const link of links.filter((l) => /\.(wants|requires)\//.test(l))) {
      const marker = join(state, link.replace(/^etc\/systemd\/system\//, ''));
      await mkdir(join(marker, '..'), { recursive: true });
      await writeFile(marker, '');
    }
    for (const also of inst.also) await enable(also);
  };
  for (const u of units) await enable(u);
  return made;
}
