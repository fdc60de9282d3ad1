import { existsSync, readdirSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { standinImage } from '../helpers/standin-image.js';
import { debugfs, ext4File, imageSkipReason, keysAndCa, partitionTable, piota, repo, run, sha256File } from './fixtures.js';

// What convert and inspect refuse, each with the reason, before anything is written: the input
// never changes and no output (not even a partial one) is left. These stop before the package is
// needed, so a file that is no package stands in for --deb.
const skip = imageSkipReason();

describe.skipIf(skip)(`piota image convert and inspect refuse what they do not understand${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let work: string;
  let keys: ReturnType<typeof keysAndCa>;
  let deb: string;
  const convert = (input: string, out: string, extra: string[] = []) =>
    piota(['image', 'convert', input, '--out', out, '--deb', deb, '--model', 'raspberrypi5', '--trusted-key', keys.pub, ...extra]);
  const leftovers = () => readdirSync(work).filter((f) => f.includes('.partial') || f.includes('out.img'));

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'piota-image-refusals-'));
    await chmod(work, 0o755);
    keys = keysAndCa(work);
    deb = join(work, 'not-used.deb');
    await writeFile(deb, 'never read: the input is refused first\n');
  }, 120_000);

  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('garbage and a GPT disk: refused with the reason, input unchanged, nothing written', async () => {
    const garbage = join(work, 'garbage.img');
    await writeFile(garbage, randomBytes(1024 * 1024));
    const gpt = join(work, 'gpt.img');
    await writeFile(gpt, Buffer.alloc(8 * 1024 * 1024));
    run('sfdisk', ['--no-reread', '--no-tell-kernel', gpt], 'label: gpt\nsize=4MiB, type=L\n');
    for (const [input, reason] of [
      [garbage, 'no MBR partition table (no 55 AA boot signature in its first sector)'],
      [gpt, 'a GPT disk (protective MBR)'],
    ] as const) {
      const before = sha256File(input);
      const r = convert(input, join(work, 'out.img'));
      expect(r.status).toBe(1);
      expect(r.stderr).toContain(`piota image convert: ${input}: ${reason}`);
      expect(sha256File(input)).toBe(before);
      expect(leftovers()).toEqual([]);
      const inspected = piota(['image', 'inspect', input]);
      expect(inspected.status).toBe(2);
      expect(inspected.stderr).toContain(reason);
    }
  });

  it('a Raspberry Pi OS image without Node.js 20: refused before anything is written', { timeout: 300_000 }, async () => {
    const standin = await standinImage();
    const noNode = join(work, 'no-node.img');
    run('cp', ['--sparse=always', standin, noNode]);
    await chmod(noNode, 0o644);
    const root = partitionTable(noNode).partitions[1]!;
    // As on Raspberry Pi OS Lite: no nodejs package and no /usr/bin/node.
    const status = ext4File(noNode, root, '/var/lib/dpkg/status')!;
    const without = status.split(/\n\n/).filter((s) => !/^Package: nodejs$/m.test(s)).join('\n\n');
    expect(without).not.toBe(status);
    await writeFile(join(work, 'status'), without);
    for (const request of ['rm /var/lib/dpkg/status', `write ${join(work, 'status')} /var/lib/dpkg/status`, 'rm /usr/bin/node']) {
      expect(debugfs(noNode, root, request, true).failed, request).toBe(false);
    }
    const before = sha256File(noNode);
    const r = convert(noNode, join(work, 'out.img'));
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('piota image convert: no Node.js in the image; piota needs Node.js 20 or newer in the image: add it with --install-deb');
    expect(sha256File(noNode)).toBe(before);
    expect(leftovers()).toEqual([]);
  });

  // The check runs piota as uid 65534: a checkout that user cannot read (a clone inside a 0700
  // directory, as `mktemp -d` makes) cannot run it, and says so rather than failing.
  const nobodyCannotRun = spawnSync(process.execPath, [join(repo, 'bin/piota.js'), '--version'], { uid: 65534, gid: 65534 }).status !== 0;
  it.skipIf(nobodyCannotRun)(`not root: says so up front (exit 3), the input untouched${nobodyCannotRun ? ' (skipped: uid 65534 cannot run this checkout; clone it where other users can read)' : ''}`, async () => {
    // Refused before the input is read, so any image will do: a small one is quick to hash.
    const standin = join(work, 'small.img');
    await writeFile(standin, randomBytes(4 * 1024 * 1024));
    await chmod(standin, 0o644);
    const before = sha256File(standin);
    const r = piota(['image', 'convert', standin, '--out', join(work, 'out.img'), '--deb', deb, '--model', 'm', '--trusted-key', keys.pub], { uid: 65534, gid: 65534 });
    expect(r.stderr).toContain('piota image convert needs root: it attaches loop devices and mounts the root file systems (run it with sudo)');
    expect(r.status).toBe(3);
    expect(sha256File(standin)).toBe(before);
    expect(existsSync(join(work, 'out.img'))).toBe(false);
  });

  it('usage: a missing --trusted-key or a bad size is exit 2 with the flag named', () => {
    const noKey = piota(['image', 'convert', 'in.img', '--out', 'out.img', '--deb', deb, '--model', 'm']);
    expect(noKey.status).toBe(2);
    expect(noKey.stderr).toContain('--trusted-key is required');
    const badSize = piota(['image', 'convert', 'in.img', '--out', 'out.img', '--deb', deb, '--model', 'm', '--trusted-key', keys.pub, '--root-size', '3.5G']);
    expect(badSize.status).toBe(2);
    expect(badSize.stderr).toContain("--root-size must be a size in whole MiB or GiB, e.g. 512M or 3G, got '3.5G'");
  });

  it('inspect of a Raspberry Pi OS image not yet converted: exit 1, says to convert it', async () => {
    const r = piota(['image', 'inspect', await standinImage()]);
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('not the A/B layout of docs/raspberry-pi.md');
    expect(r.stdout).toContain('convert it with piota image convert');
  });
});
