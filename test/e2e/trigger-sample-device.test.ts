import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import deviceSdk from 'azure-iot-device';
import mqttTransport from 'azure-iot-device-mqtt';
import { addDevice } from '../../src/hub-emulator/index.js';
import { World, piotaBin } from './world.js';

// A device that speaks only Microsoft's firmware-update sample schema (no updateId, its own
// statuses, a string answer), written with the real device SDK: piota trigger must follow it.
let world: World;
let client: InstanceType<typeof deviceSdk.Client> | undefined;
beforeAll(async () => {
  world = await World.create();
}, 60_000);
afterAll(async () => {
  await client?.close();
  await world?.close();
});

describe('piota trigger and a device running Microsoft\'s sample', () => {
  it('follows its statuses, shows an unknown one as it is, and ends on applyComplete', async () => {
    const cs = await addDevice(world.hubDir, 'ms-sample');
    client = deviceSdk.Client.fromConnectionString(cs, mqttTransport.Mqtt);
    await client.setOptions({ ca: await readFile(world.hub.info.caFile, 'utf8') });
    await client.open();
    const twin = await client.getTwin();
    const report = (fu: Record<string, unknown>) =>
      new Promise<void>((resolve, reject) =>
        (twin.properties.reported as any).update({ iothubDM: { firmwareUpdate: fu } }, (err?: Error) => (err ? reject(err) : resolve())),
      );
    // What an earlier update left on the twin must not be taken for this one's result.
    await report({ status: 'applyComplete', fwPackageUri: 'https://localhost/older.bin' });
    client.onDeviceMethod('firmwareUpdate', (request, response) => {
      void (async () => {
        await response.send(200, 'FirmwareUpdate started');
        const uri = (request.payload as { fwPackageUri: string }).fwPackageUri;
        for (const status of ['waiting', 'downloading', 'rebooting-soon', 'applying', 'applyComplete']) {
          await new Promise((r) => setTimeout(r, 700));
          await report({ status, fwPackageUri: uri });
        }
      })();
    });

    const child = spawn(process.execPath, [piotaBin, 'trigger', '--hub-dir', world.hubDir, '--device', 'ms-sample', '--uri', 'https://localhost/fw.bin', '--json', '--timeout', '30'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise((r) => child.on('exit', r));
    expect(code, out).toBe(0);
    const events = out.trim().split('\n').map((l) => JSON.parse(l));
    expect(events[0]).toMatchObject({ event: 'accepted', updateId: null, message: 'FirmwareUpdate started' });
    expect(events.filter((e) => e.event === 'status').map((e) => e.status)).toEqual(['waiting', 'downloading', 'rebooting-soon', 'applying', 'applyComplete']);
    expect(events.at(-1)).toMatchObject({ event: 'result', result: 'applyComplete', exitCode: 0 });
  });
});
