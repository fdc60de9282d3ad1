import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unpackDeb } from '../../src/image/deb-unpack.js';
import { ImageError } from '../../src/image/image-error.js';
import { findNode, nodeProblem } from '../../src/image/node-check.js';
import { dirReader } from '../../src/image/root-reader.js';
import { Scratch } from '../../src/image/scratch.js';

// --install-deb and --deb without running anything of the image: real packages made with
// dpkg-deb, unpacked into a directory standing for the image's root, with its own dpkg database.
const skip = spawnSync('sh', ['-c', 'command -v dpkg-deb']).status !== 0 ? 'dpkg-deb is missing' : undefined;

async function makeDeb(dir: string, name: string, control: Record<string, string>, files: Record<string, string>, scripts: Record<string, string> = {}): Promise<string> {
  const root = join(dir, `${name}-build`);
  await mkdir(join(root, 'DEBIAN'), { recursive: true });
  const fields = { Package: name, Version: '1.0', Architecture: 'all', Maintainer: 'test <t@invalid>', Description: 'a test package\n second line', ...control };
  await writeFile(join(root, 'DEBIAN/control'), Object.entries(fields).map(([k, v]) => `${k}: ${v}`).join('\n') + '\n');
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(root, path, '..'), { recursive: true });
    await writeFile(join(root, path), text);
  }
  for (const [script, text] of Object.entries(scripts)) {
    await writeFile(join(root, 'DEBIAN', script), text);
    await chmod(join(root, 'DEBIAN', script), 0o755);
  }
  if (files['etc/thing.conf']) await writeFile(join(root, 'DEBIAN/conffiles'), '/etc/thing.conf\n');
  const deb = join(dir, `${name}.deb`);
  const r = spawnSync('dpkg-deb', ['--root-owner-group', '--build', root, deb], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return deb;
}

describe.skipIf(skip)(`offline package installation${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let work: string;
  let root: string;
  const scratch = new Scratch();

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'piota-deb-unpack-'));
    root = join(work, 'root');
    await mkdir(join(root, 'var/lib/dpkg'), { recursive: true });
    await writeFile(join(root, 'var/lib/dpkg/arch'), 'arm64\n');
    await writeFile(join(root, 'var/lib/dpkg/status'), 'Package: base-files\nStatus: install ok installed\nVersion: 13\nArchitecture: arm64\n');
  });

  afterAll(async () => {
    await scratch.release();
    await rm(work, { recursive: true, force: true });
  });

  it("unpacks the files and writes dpkg's records without running the maintainer scripts", async () => {
    const deb = await makeDeb(
      work,
      'thing',
      { Version: '2.1-1' },
      { 'usr/bin/thing': '#!/bin/sh\necho thing\n', 'etc/thing.conf': 'setting=1\n' },
      { postinst: `#!/bin/sh\ntouch ${join(work, 'postinst-ran')}\n` },
    );
    const p = await unpackDeb(deb, root, scratch, work);
    expect(p).toEqual({ name: 'thing', version: '2.1-1', architecture: 'all', scripts: ['postinst'] });
    expect(existsSync(join(work, 'postinst-ran'))).toBe(false);
    expect(await readFile(join(root, 'usr/bin/thing'), 'utf8')).toBe('#!/bin/sh\necho thing\n');
    const status = await readFile(join(root, 'var/lib/dpkg/status'), 'utf8');
    expect(status).toMatch(/^Package: base-files\n/); // the stanzas already there stay
    expect(status).toMatch(/\n\nPackage: thing\nStatus: install ok installed\n(.+\n)*Version: 2\.1-1\n/);
    expect(status).toMatch(/Description: a test package\n second line\n/);
    const md5 = spawnSync('md5sum', [join(root, 'etc/thing.conf')], { encoding: 'utf8' }).stdout.split(' ')[0];
    expect(status).toContain(`Conffiles:\n /etc/thing.conf ${md5}\n`);
    const list = (await readFile(join(root, 'var/lib/dpkg/info/thing.list'), 'utf8')).split('\n');
    expect(list).toEqual(expect.arrayContaining(['/.', '/usr/bin', '/usr/bin/thing', '/etc/thing.conf']));
    expect(await readFile(join(root, 'var/lib/dpkg/info/thing.md5sums'), 'utf8')).toMatch(/^[0-9a-f]{32} {2}usr\/bin\/thing\n$/);
    expect((await stat(join(root, 'var/lib/dpkg/info/thing.postinst'))).mode & 0o111).not.toBe(0);
    // The host's dpkg reads the database as its own.
    const q = spawnSync('dpkg-query', [`--admindir=${join(root, 'var/lib/dpkg')}`, '-W', '-f', '${Status} ${Version}', 'thing'], { encoding: 'utf8' });
    expect(q.stdout).toBe('install ok installed 2.1-1');
    // Again, with a new version: one stanza, replaced.
    await unpackDeb(await makeDeb(work, 'thing', { Version: '2.2-1' }, { 'usr/bin/thing': 'v2\n' }), root, scratch, work);
    const again = await readFile(join(root, 'var/lib/dpkg/status'), 'utf8');
    expect(again.match(/Package: thing\n/g)).toHaveLength(1);
    expect(again).toContain('Version: 2.2-1');
  });

  it('refuses a package for another architecture, and a file that is no package', async () => {
    const amd = await makeDeb(work, 'libx', { Architecture: 'amd64' }, { 'usr/lib/libx.so': 'x' });
    await expect(unpackDeb(amd, root, scratch, work)).rejects.toThrow(
      new ImageError('refused', `${amd}: built for amd64, but the image is arm64: fetch the package for the image's architecture (apt-get download libx:arm64)`),
    );
    const junk = join(work, 'junk.deb');
    await writeFile(junk, 'not a package');
    await expect(unpackDeb(junk, root, scratch, work)).rejects.toThrow(`${junk}: not a Debian package (dpkg-deb cannot read it)`);
  });

  it('finds Node.js by the dpkg database, by a package providing it, or not at all', async () => {
    const bare = join(work, 'bare');
    await mkdir(join(bare, 'var/lib/dpkg'), { recursive: true });
    await writeFile(join(bare, 'var/lib/dpkg/status'), '');
    expect(await findNode(dirReader(bare))).toBeUndefined();
    expect(nodeProblem(undefined)).toContain('no Node.js in the image');
    // Node.js 18 (bookworm's): refused.
    await unpackDeb(await makeDeb(work, 'nodejs', { Version: '18.19.0+dfsg-6~deb12u2' }, { 'usr/bin/node': '#!/bin/sh\n' }), bare, scratch, work);
    const old = await findNode(dirReader(bare));
    expect(old).toEqual({ version: '18.19.0+dfsg-6~deb12u2', source: 'dpkg status: nodejs' });
    expect(nodeProblem(old)).toContain('Node.js 18.19.0+dfsg-6~deb12u2 in the image (dpkg status: nodejs) is older than 20');
    // --install-deb of a 20: accepted.
    await unpackDeb(await makeDeb(work, 'nodejs', { Version: '20.19.2+dfsg-1' }, { 'usr/bin/node': '#!/bin/sh\n' }), bare, scratch, work);
    expect(nodeProblem(await findNode(dirReader(bare)))).toBeUndefined();
    // Node.js from elsewhere, announced by a package that Provides it (the equivs way).
    const shim = join(work, 'shim');
    await mkdir(join(shim, 'var/lib/dpkg'), { recursive: true });
    await unpackDeb(await makeDeb(work, 'node-shim', { Provides: 'nodejs (= 22.1.0)' }, { 'usr/share/doc/node-shim/README': 'x' }), shim, scratch, work);
    expect(await findNode(dirReader(shim))).toEqual({ version: '22.1.0', source: 'dpkg status: node-shim (Provides: nodejs)' });
  });
});
