import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostArch, standinImage } from '../helpers/standin-image.js';
import { buildDeb, debugfs, ext4File, imageSkipReason, keysAndCa, partitionTable, piota, sha256File, type Ran } from './fixtures.js';

// The converter does not care about the image's architecture: an arm64 stand-in (unpacked by
// mmdebstrap without emulation: no dpkg database, no maintainer scripts run) converts and
// inspects cleanly on this machine, with one device's connection string baked in. Not booted.
const skip = imageSkipReason() ?? (hostArch() === 'arm64' ? 'the host is arm64: this test is about a foreign architecture' : undefined);
const CS = 'HostName=fleet.azure-devices.net;DeviceId=pi-7;SharedAccessKey=c2VjcmV0LWtleS1mb3ItdGVzdHM=';

describe.skipIf(skip)(`an arm64 image${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let work: string;
  let input: string;
  let inputHash: string;
  let out: string;
  let converted: Ran;

  beforeAll(async () => {
    input = await standinImage('arm64');
    inputHash = sha256File(input);
    work = await mkdtemp(join(tmpdir(), 'piota-image-arm64-'));
    const keys = keysAndCa(work);
    out = join(work, 'arm64.img');
    converted = piota(
      ['image', 'convert', input, '--out', out, '--deb', buildDeb(), '--model', 'raspberrypi5', '--trusted-key', keys.pub,
        '--connection-string', '-', '--boot-size', '64M', '--root-size', '512M', '--data-size', '32M'],
      { input: `${CS}\n` },
    );
  }, 900_000);

  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('converts, with Node.js found from the package files, and bakes the connection string in (0600)', () => {
    expect(converted.stderr).toBe('');
    expect(converted.status).toBe(0);
    expect(sha256File(input)).toBe(inputHash);
    expect(converted.stdout).toMatch(/Node\.js 2\d\.\S+ \(usr\/share\/doc\/nodejs\/changelog\.Debian\.gz\)/);
    expect(converted.stdout).not.toContain('no connection string baked in');
    expect(converted.stdout).not.toContain('c2VjcmV0'); // the key never reaches the output
    const data = partitionTable(out).partitions[6]!;
    expect(ext4File(out, data, '/piota/connection-string')).toBe(CS);
    expect(debugfs(out, data, 'stat /piota/connection-string').out).toMatch(/Mode:\s+0600/);
    const root = partitionTable(out).partitions[4]!;
    expect(ext4File(out, root, '/var/lib/dpkg/arch')).toBe('arm64\n');
  });

  it('inspects cleanly', { timeout: 300_000 }, () => {
    const r = piota(['image', 'inspect', out, '--json']);
    expect(r.stderr).toBe('');
    const report = JSON.parse(r.stdout);
    expect(report.problems).toEqual([]);
    expect(r.status).toBe(0);
    expect(report.slots.A.node).toMatch(/^2\d\./);
    expect(report.connectionStringBaked).toBe(true);
  });
});
