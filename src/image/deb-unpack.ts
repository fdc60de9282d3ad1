import { createHash } from 'node:crypto';
import { chmod, copyFile, lstat, mkdir, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileDurably } from '../os/durable-file.js';
import { formatStanzas, parseStanzas, type Stanza } from './dpkg-status.js';
import { ImageError } from './image-error.js';
import type { Scratch } from './scratch.js';
import { toolText } from './run-tool.js';

export interface UnpackedPackage {
  name: string;
  version: string;
  architecture: string;
  /** Its maintainer scripts, which were not run (the caller does their work or says why not). */
  scripts: string[];
}

const SCRIPTS = ['preinst', 'postinst', 'prerm', 'postrm'];

/**
 * Installs a .deb into the root file system mounted at `root` without running anything of the
 * image's: the host's dpkg-deb unpacks the files, and the dpkg database is written as dpkg would
 * (the status stanza with `install ok installed` and the conffiles' md5sums, info/<pkg>.list,
 * .md5sums, .conffiles and the maintainer scripts), so the device's dpkg upgrades or removes the
 * package later as if it had installed it. The maintainer scripts are NOT run.
 */
export async function unpackDeb(deb: string, root: string, scratch: Scratch, tmpParent: string): Promise<UnpackedPackage> {
  const control = parseStanzas(await toolText('dpkg-deb', ['--field', deb]).catch(() => {
    throw new ImageError('refused', `${deb}: not a Debian package (dpkg-deb cannot read it)`);
  }))[0];
  const name = control?.get('Package');
  const version = control?.get('Version');
  const architecture = control?.get('Architecture') ?? 'all';
  if (!control || !name || !version) throw new ImageError('refused', `${deb}: a Debian package without Package or Version`);
  const imageArch = (await readFile(join(root, 'var/lib/dpkg/arch'), 'utf8').catch(() => ''))
    .split('\n')
    .filter(Boolean);
  if (architecture !== 'all' && imageArch.length > 0 && !imageArch.includes(architecture)) {
    throw new ImageError('refused', `${deb}: built for ${architecture}, but the image is ${imageArch.join('/')}: fetch the package for the image's architecture (apt-get download ${name}:${imageArch[0]})`);
  }
  const ctrlDir = await scratch.tempDir(tmpParent, 'deb-control-');
  await toolText('dpkg-deb', ['--control', deb, ctrlDir]);
  const listing = await toolText('dpkg-deb', ['--vextract', deb, root]);

  // dpkg-deb lists ./, ./usr/, ./usr/bin/x; dpkg's .list says /., /usr, /usr/bin/x.
  const paths = listing
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .map((l) => l.replace(/^\.\/?/, '/').replace(/(.)\/$/, '$1'));
  const list = paths.map((p) => (p === '/' ? '/.' : p));
  const conffiles = (await readFile(join(ctrlDir, 'conffiles'), 'utf8').catch(() => ''))
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('/'));
  const md5 = async (p: string) => createHash('md5').update(await readFile(join(root, p))).digest('hex');
  const sums: string[] = [];
  for (const p of paths) {
    const st = await lstat(join(root, p)).catch(() => undefined);
    if (st?.isFile() && !conffiles.includes(p)) sums.push(`${await md5(p)}  ${p.slice(1)}`);
  }

  // Multi-Arch: same packages are recorded per architecture (info/libfoo:arm64.list).
  const infoName = control.get('Multi-Arch') === 'same' ? `${name}:${architecture}` : name;
  const info = join(root, 'var/lib/dpkg/info');
  await mkdir(info, { recursive: true });
  await writeFileDurably(join(info, `${infoName}.list`), list.join('\n') + '\n');
  await writeFileDurably(join(info, `${infoName}.md5sums`), sums.join('\n') + (sums.length ? '\n' : ''));
  const scripts: string[] = [];
  for (const f of await readdir(ctrlDir)) {
    if (f === 'control' || f === 'md5sums') continue;
    await copyFile(join(ctrlDir, f), join(info, `${infoName}.${f}`));
    if (SCRIPTS.includes(f)) {
      await chmod(join(info, `${infoName}.${f}`), 0o755);
      scripts.push(f);
    }
  }

  const stanza: Stanza = new Map([['Package', name], ['Status', 'install ok installed']]);
  for (const [k, v] of control) if (k !== 'Package' && k !== 'Status') stanza.set(k, v);
  if (conffiles.length > 0) {
    const lines = await Promise.all(conffiles.map(async (c) => ` ${c} ${await md5(c)}`));
    stanza.set('Conffiles', '\n' + lines.join('\n'));
  }
  const statusPath = join(root, 'var/lib/dpkg/status');
  const status = parseStanzas(await readFile(statusPath, 'utf8').catch(() => ''));
  const same = (s: Stanza) => s.get('Package') === name && (control.get('Multi-Arch') !== 'same' || s.get('Architecture') === architecture);
  const at = status.findIndex(same);
  if (at >= 0) status[at] = stanza;
  else status.push(stanza);
  await writeFileDurably(statusPath, formatStanzas(status), { mkdirs: true });
  return { name, version, architecture, scripts };
}
