import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// The built command, as install.sh runs it: exit codes, stdout and stderr are the contract.
const bin = fileURLToPath(new URL('../../bin/piota.js', import.meta.url));
const example = fileURLToPath(new URL('../../config.example.json', import.meta.url));
const run = (args: string[], input = '') => spawnSync(process.execPath, [bin, 'config', 'check', ...args], { encoding: 'utf8', input });
const SUPPORTED = 'piota supports device connection strings with HostName, DeviceId and SharedAccessKey; x509=true and SharedAccessSignature strings (which expire) are not supported';

let dir: string;
let bad: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'piota-config-check-'));
  const c = JSON.parse(await readFile(example, 'utf8'));
  c.boot.bootPartitions.A = 64; // one past the shared 1-63 rule
  bad = join(dir, 'bad.json');
  await writeFile(bad, JSON.stringify(c));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('piota config check FILE', () => {
  it('passes a valid config: "ok: FILE", exit 0, nothing on stderr', () => {
    const r = run([example]);
    expect({ status: r.status, stdout: r.stdout, stderr: r.stderr }).toEqual({ status: 0, stdout: `ok: ${example}\n`, stderr: '' });
  });

  it("refuses with the daemon's own message on stderr, exit 2", () => {
    const r = run([bad]);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`config ${bad}: boot.bootPartitions.A: expected a whole number from 1 to 63, got 64\n`);
  });

  it('names a missing file and a file that is not JSON', async () => {
    expect(run([join(dir, 'absent.json')]).stderr).toMatch(/absent\.json: cannot read \(ENOENT\)/);
    await writeFile(join(dir, 'text.json'), 'model: pi');
    const r = run([join(dir, 'text.json')]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/text\.json: not valid JSON/);
  });

  it('--json prints one object on stdout either way', () => {
    const good = run(['--json', example]);
    expect({ status: good.status, out: JSON.parse(good.stdout), stderr: good.stderr }).toEqual({ status: 0, out: { ok: true }, stderr: '' });
    const refused = run([bad, '--json']);
    expect(refused.status).toBe(2);
    expect(refused.stderr).toBe('');
    expect(JSON.parse(refused.stdout)).toEqual({ ok: false, error: `config ${bad}: boot.bootPartitions.A: expected a whole number from 1 to 63, got 64` });
  });

  it('is a usage error without a file, or with both kinds', () => {
    for (const args of [[], [example, '--connection-string', example]]) {
      const r = run(args);
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(/give either a config FILE or --connection-string FILE/);
    }
  });
});

describe('piota config check --connection-string FILE', () => {
  it('passes a device connection string file (a trailing newline is fine)', async () => {
    const file = join(dir, 'cs-good');
    await writeFile(file, 'HostName=fleet.azure-devices.net;DeviceId=pi-7;SharedAccessKey=c2VjcmV0\n', { mode: 0o600 });
    const r = run(['--connection-string', file]);
    expect({ status: r.status, stdout: r.stdout, stderr: r.stderr }).toEqual({ status: 0, stdout: `ok: ${file}\n`, stderr: '' });
  });

  it('refuses x509=true with the shared rule, from stdin (-) too, without echoing the string', () => {
    const r = run(['--connection-string', '-'], 'HostName=h.azure-devices.net;DeviceId=pi-7;x509=true\n');
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`connection string -: this is an x509 (certificate) connection string: ${SUPPORTED}\n`);
    const sas = run(['--connection-string', '-', '--json'], 'HostName=h;DeviceId=pi-7;SharedAccessSignature=SharedAccessSignature sr=h&sig=S3cr3t&se=1');
    expect(sas.status).toBe(2);
    const out = JSON.parse(sas.stdout);
    expect(out.ok).toBe(false);
    expect(out.error).toMatch(/SharedAccessSignature connection string \(it expires\)/);
    expect(sas.stdout).not.toContain('S3cr3t');
  });
});
