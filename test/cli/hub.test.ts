import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import type { HubInfo } from '../../src/hub-emulator/index.js';
import { serviceRegistry } from '../../src/service/hub-connection.js';
import { eventually, removeDir, tempDir } from '../hub-emulator/helpers.js';

const bin = fileURLToPath(new URL('../../bin/piota.js', import.meta.url));
const run = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });

describe('piota hub', () => {
  let dir: string;
  let child: ChildProcess | undefined;

  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(async () => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    await removeDir(dir);
  });

  it('device add works before the hub ever ran (default host and port)', () => {
    const r = run('hub', 'device', 'add', 'early', '--dir', dir);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^HostName=localhost:18883;DeviceId=early;SharedAccessKey=[A-Za-z0-9+/=]{44}\n$/);
  });

  it('hub start serves devices; device add while it runs gives a string that connects at once; SIGTERM stops it', async () => {
    child = spawn(process.execPath, [bin, 'hub', 'start', '--dir', dir, '--mqtt-port', '0', '--https-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    await eventually(() => out.includes('hub.json written'), 20_000, 'the hub to start');
    const info = JSON.parse(await readFile(`${dir}/hub.json`, 'utf8')) as HubInfo;
    expect(out).toContain(`mqtts://localhost:${info.mqttPort}`);

    const r = run('hub', 'device', 'add', 'cli-dev', '--dir', dir);
    expect(r.status).toBe(0);
    const cs = r.stdout.trim();
    expect(cs).toContain(`HostName=localhost:${info.mqttPort};DeviceId=cli-dev;`);
    const device = deviceSdk.Client.fromConnectionString(cs, deviceMqtt.Mqtt);
    await device.setOptions({ ca: await readFile(info.caFile, 'utf8') });
    await device.open();
    const twin = await device.getTwin();
    await new Promise<void>((ok, fail) => twin.properties.reported.update({ hello: 'cli' }, (e?: Error) => (e ? fail(e) : ok())));
    expect((await serviceRegistry(info).getTwin('cli-dev')).responseBody.properties.reported.hello).toBe('cli');
    // The device registered before the first start is known too.
    expect((await serviceRegistry(info).get('early')).responseBody.deviceId).toBe('early');
    await device.close();

    const exited = new Promise<number | null>((ok) => child!.once('exit', (code) => ok(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(out).toContain('piota hub: stopped');
  });

  it('user errors are one line and a non-zero exit', () => {
    for (const args of [
      ['hub', 'start'],
      ['hub', 'start', '--dir', dir, '--mqtt-port', 'abc'],
      ['hub', 'start', '--dir', dir, '--https-port', '70000'],
      ['hub', 'device', 'add', '--dir', dir],
      ['hub', 'device', 'add', 'bad/id', '--dir', dir],
      ['hub', 'device', 'add', 'x'],
    ]) {
      const r = run(...args);
      expect(r.status, args.join(' ')).not.toBe(0);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stdout).toBe('');
    }
  });

  it('has help', () => {
    const r = run('hub', 'start', '--help');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('--mqtt-port');
    expect(run('hub', 'device', 'add', '--help').stdout).toContain('connection string');
  });
});
