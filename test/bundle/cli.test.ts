import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { imageBytes, workspace, type Workspace } from './fixtures.js';

// Runs the built command (npm test builds before vitest runs).
const bin = fileURLToPath(new URL('../../bin/piota.js', import.meta.url));
const hasOpenssl = spawnSync('openssl', ['version']).status === 0;
if (!hasOpenssl) console.warn('cli.test.ts: openssl is not installed, skipping the openssl key test');

let ws: Workspace;
const piota = (...args: string[]) => {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', cwd: ws.dir });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
};

/** Exit 1 and exactly one stderr line `error <code>: ...`, no stack trace. */
function expectRefusal(r: ReturnType<typeof piota>, code: string) {
  expect(r.status, r.stderr).toBe(1);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(new RegExp(`^error ${code}: \\S`));
}

beforeAll(async () => {
  ws = await workspace();
  await writeFile(ws.path('rootfs.img'), imageBytes(50_000, 3));
  await writeFile(ws.path('boot.img'), imageBytes(6_000, 4));
  const r = piota('bundle', 'keygen', '--out', 'keys');
  expect(r.status, r.stderr).toBe(0);
  const create = piota(
    'bundle', 'create', '--key', 'keys/piota.key', '--version', '3.1.0', '--compatible', 'raspberrypi4-64',
    '--payload', 'rootfs=rootfs.img', '--payload', 'boot=boot.img', '--security-version', '4', '--chunk-size', '8K', '--out', 'good.bundle',
  );
  expect(create.status, create.stderr).toBe(0);
});
afterAll(() => ws.remove());

describe('piota bundle keygen', () => {
  it('writes a 0600 private key and a public key, and says the key id', async () => {
    expect((await stat(ws.path('keys/piota.key'))).mode & 0o777).toBe(0o600);
    expect(await readFile(ws.path('keys/piota.pub'), 'utf8')).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    const again = piota('bundle', 'keygen', '--out', 'keys2');
    expect(again.stdout).toMatch(/key id [0-9a-f]{32}/);
  });

  it('never overwrites a key', () => {
    const r = piota('bundle', 'keygen', '--out', 'keys');
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toMatch(/^piota: .*piota.key already exists/);
  });
});

describe('piota bundle create, verify, info', () => {
  it('verify: exit 0 with what held', () => {
    const r = piota('bundle', 'verify', 'good.bundle', '--pubkey', 'keys/piota.pub', '--model', 'raspberrypi4-64');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ok: good.bundle version 3.1.0 \(security version 4\), signed by trusted key [0-9a-f]{32}, 8 chunks verified; .*; compatible with raspberrypi4-64$/m);
  });

  it('create prints what it made', () => {
    const r = piota('bundle', 'create', '--key', 'keys/piota.key', '--version', '1', '--compatible', 'm', '--payload', 'rootfs=rootfs.img', '--compress', 'none', '--out', 'plain.bundle');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('created plain.bundle');
    expect(r.stdout).toContain('payload rootfs: image 48.8 KiB (50000 bytes) sha256 ');
    expect(r.stdout).toContain('1 none chunk of up to 4 MiB');
    expect(r.stdout).toMatch(/signed by key [0-9a-f]{32}/);
    expect(piota('bundle', 'verify', 'plain.bundle', '--pubkey', 'keys/piota.pub').status).toBe(0);
  });

  it('info prints the manifest, as text and as JSON', () => {
    const text = piota('bundle', 'info', 'good.bundle');
    expect(text.status).toBe(0);
    expect(text.stdout).toContain('version           3.1.0');
    expect(text.stdout).toContain('payload boot');
    const json = JSON.parse(piota('bundle', 'info', 'good.bundle', '--json').stdout);
    expect(json).toMatchObject({ version: '3.1.0', securityVersion: 4, compatible: ['raspberrypi4-64'] });
    expect(json.payloads.map((p: { name: string; chunkCount: number }) => [p.name, p.chunkCount])).toEqual([['rootfs', 7], ['boot', 1]]);
    expect(json.chunks).toHaveLength(8);
    expect(json.signatures[0].keyId).toMatch(/^[0-9a-f]{32}$/);
    expect(json.bundleSize).toBe(json.fileSize);
  });

  it('verify refuses with the right code and one line', async () => {
    const good = await readFile(ws.path('good.bundle'));
    const header = JSON.parse(piota('bundle', 'info', 'good.bundle', '--json').stdout);
    const variant = async (name: string, change: (b: Buffer) => Buffer) => {
      await writeFile(ws.path(name), change(Buffer.from(good)));
      return name;
    };
    const flip = (at: number) => (b: Buffer) => {
      b[at] ^= 1;
      return b;
    };
    piota('bundle', 'keygen', '--out', 'other');
    const pub = ['--pubkey', 'keys/piota.pub'];
    expectRefusal(piota('bundle', 'verify', 'good.bundle', '--pubkey', 'other/piota.pub'), 'untrustedKey');
    expectRefusal(piota('bundle', 'verify', 'good.bundle', ...pub, '--model', 'raspberrypi3'), 'incompatible');
    expectRefusal(piota('bundle', 'verify', 'good.bundle', ...pub, '--security-version', '5'), 'downgrade');
    expectRefusal(piota('bundle', 'verify', await variant('magic', flip(1)), ...pub), 'malformed');
    expectRefusal(piota('bundle', 'verify', await variant('manifest', flip(header.headerLength - 200)), ...pub), 'signatureInvalid');
    expectRefusal(piota('bundle', 'verify', await variant('payload', flip(header.chunks[4].bundleOffset + 3)), ...pub), 'hashMismatch');
    expectRefusal(piota('bundle', 'verify', await variant('short', (b) => b.subarray(0, b.length - 1)), ...pub), 'truncated');
    expectRefusal(piota('bundle', 'verify', 'missing.bundle', ...pub), 'unreadable');
    expectRefusal(piota('bundle', 'verify', 'good.bundle', '--pubkey', 'keys/piota.key'), 'badKey');
    expectRefusal(piota('bundle', 'verify', 'good.bundle', '--pubkey', 'nokey.pub'), 'badKey');
  });

  it('unsigned, then signed elsewhere (an openssl key): refused, then verified', { skip: !hasOpenssl }, () => {
    const made = piota('bundle', 'create', '--version', '2', '--compatible', 'm', '--payload', 'rootfs=rootfs.img', '--chunk-size', '16384', '--out', 'later.bundle');
    expect(made.status, made.stderr).toBe(0);
    expect(made.stdout).toContain('unsigned: sign it with piota bundle sign later.bundle --key KEY');
    expectRefusal(piota('bundle', 'verify', 'later.bundle', '--pubkey', 'keys/piota.pub'), 'unsigned');
    expect(spawnSync('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', ws.path('o.key')]).status).toBe(0);
    expect(spawnSync('openssl', ['pkey', '-in', ws.path('o.key'), '-pubout', '-out', ws.path('o.pub')]).status).toBe(0);
    const signed = piota('bundle', 'sign', 'later.bundle', '--key', 'o.key');
    expect(signed.status, signed.stderr).toBe(0);
    expect(signed.stdout).toMatch(/^signed with key [0-9a-f]{32}: later.bundle/);
    expect(piota('bundle', 'verify', 'later.bundle', '--pubkey', 'o.pub', '--pubkey', 'keys/piota.pub').status).toBe(0);
  });

  it('usage errors: exit 2, one line naming the problem', () => {
    const cases: [string[], RegExp][] = [
      [['bundle', 'create', '--compatible', 'm', '--payload', 'rootfs=rootfs.img', '--out', 'x'], /--version is required/],
      [['bundle', 'create', '--version', '1', '--compatible', 'm', '--payload', 'rootfs', '--out', 'x'], /--payload must be NAME=FILE/],
      [['bundle', 'create', '--version', '1', '--compatible', 'm', '--payload', 'a=b', '--compress', 'zstd', '--out', 'x'], /--compress must be (gzip or none|none or gzip)/],
      [['bundle', 'create', '--version', '1', '--compatible', 'm', '--payload', 'a=b', '--chunk-size', '12', '--out', 'x'], /--chunk-size/],
      [['bundle', 'create', '--version', '1', '--payload', 'a=b', '--out', 'x'], /--compatible is required/],
      [['bundle', 'verify', 'good.bundle'], /--pubkey is required/],
      [['bundle', 'sign', '--key', 'k'], /missing argument/],
      [['bundle', 'info', 'a', 'b'], /unexpected argument 'b'/],
    ];
    for (const [args, message] of cases) {
      const r = piota(...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(message);
    }
  });

  it('errors in create, sign and info are one line, exit 1', () => {
    for (const args of [
      ['bundle', 'create', '--version', '1', '--compatible', 'm', '--payload', 'rootfs=nothere.img', '--out', 'x.bundle'],
      ['bundle', 'create', '--version', 'a b', '--compatible', 'm', '--payload', 'rootfs=rootfs.img', '--out', 'x.bundle'],
      ['bundle', 'sign', 'rootfs.img', '--key', 'keys/piota.key'],
      ['bundle', 'sign', 'good.bundle', '--key', 'keys/piota.pub'],
      ['bundle', 'info', 'rootfs.img'],
      ['bundle', 'info', 'nothere.bundle'],
    ]) {
      const r = piota(...args);
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stderr.trimEnd().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr).toMatch(/^piota: /);
    }
  });

  it('every bundle command has --help', () => {
    for (const sub of ['keygen', 'create', 'sign', 'verify', 'info']) {
      const r = piota('bundle', sub, '--help');
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Usage: piota bundle ${sub}`));
    }
  });
});
