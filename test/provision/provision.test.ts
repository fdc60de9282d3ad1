import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureBuilt } from '../simulator/helpers.js';

// `piota provision` as piota-provision.service runs it: the built command, real files.
const bin = fileURLToPath(new URL('../../bin/piota.js', import.meta.url));
const example = fileURLToPath(new URL('../../config.example.json', import.meta.url));
const CS = 'HostName=hub.example.net;DeviceId=pi-7;SharedAccessKey=c2VjcmV0LWtleS1mb3ItdGVzdHM=';
const provision = (args: string[]) => spawnSync(process.execPath, [bin, 'provision', ...args], { encoding: 'utf8' });

let dir: string;
beforeAll(async () => {
  ensureBuilt();
  dir = await mkdtemp(join(tmpdir(), 'piota-provision-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function fresh(name: string, dropped: string | undefined) {
  const fat = join(dir, name, 'bootconfig');
  const stateDir = join(dir, name, 'data', 'piota');
  await mkdir(fat, { recursive: true });
  const from = join(fat, 'piota-connection-string.txt');
  if (dropped !== undefined) await writeFile(from, dropped);
  return { from, stateDir, target: join(stateDir, 'connection-string') };
}

describe('piota provision', () => {
  it('moves a dropped string (BOM and CRLF from a laptop editor) to the state directory, 0600, and deletes it', async () => {
    const f = await fresh('move', `\uFEFF${CS}\r\n`);
    const r = provision(['--from', f.from, '--state-dir', f.stateDir]);
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
    expect(r.stdout).toBe(`provisioned device pi-7 (written): ${f.from} -> ${f.target}; ${f.from} deleted\n`);
    expect(await readFile(f.target, 'utf8')).toBe(`${CS}\n`);
    expect((await stat(f.target)).mode & 0o777).toBe(0o600);
    expect((await stat(f.stateDir)).mode & 0o777).toBe(0o700);
    expect(existsSync(f.from)).toBe(false);
  });

  it('replaces an earlier string (the device was re-provisioned), and says so', async () => {
    const f = await fresh('replace', CS.replace('pi-7', 'pi-8'));
    await mkdir(f.stateDir, { recursive: true });
    await writeFile(f.target, `${CS}\n`, { mode: 0o600 });
    const r = provision(['--from', f.from, '--state-dir', f.stateDir]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('provisioned device pi-8 (replaced)');
    expect(await readFile(f.target, 'utf8')).toBe(`${CS.replace('pi-7', 'pi-8')}\n`);
    expect(existsSync(f.from)).toBe(false);
  });

  it('refuses an unusable string with the reason, never the key, and leaves the file and the state alone', async () => {
    const hubString = 'HostName=hub.example.net;SharedAccessKeyName=iothubowner;SharedAccessKey=dG9wLXNlY3JldA==';
    const f = await fresh('refuse', hubString);
    const r = provision(['--from', f.from, '--state-dir', f.stateDir]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`${f.from}: this is a hub (service) connection string (SharedAccessKeyName=), not a device one`);
    expect(r.stderr).toContain('the file is left in place, nothing was written');
    expect(r.stderr).not.toContain('dG9wLXNlY3JldA==');
    expect(await readFile(f.from, 'utf8')).toBe(hubString);
    expect(existsSync(f.stateDir)).toBe(false);
  });

  it('has nothing to do without a dropped file (exit 0), and takes the state directory from the config', async () => {
    const f = await fresh('nothing', undefined);
    const config = JSON.parse(await readFile(example, 'utf8'));
    config.stateDir = f.stateDir;
    const configFile = join(dir, 'nothing', 'config.json');
    await writeFile(configFile, JSON.stringify(config));
    const r = provision(['--from', f.from, '--config', configFile]);
    expect({ status: r.status, stdout: r.stdout, stderr: r.stderr }).toEqual({ status: 0, stdout: `nothing to provision: ${f.from} does not exist\n`, stderr: '' });
    await writeFile(f.from, CS);
    const moved = provision(['--from', f.from, '--config', configFile]);
    expect(moved.status, moved.stderr).toBe(0);
    expect(await readFile(f.target, 'utf8')).toBe(`${CS}\n`);
  });

  it('names a config it cannot use (exit 2)', async () => {
    const f = await fresh('badconfig', CS);
    const r = provision(['--from', f.from, '--config', join(dir, 'missing.json')]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('missing.json');
    expect(existsSync(f.from)).toBe(true);
  });
});
