import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import deviceSdk from 'azure-iot-device';
import mqttTransport from 'azure-iot-device-mqtt';
import { addDevice } from '../../src/hub-emulator/index.js';
import { World, piotaBin } from './world.js';

// A device that speaks only Microsoft's firmware-update sample schema (no updateId, its own
// statuses, a string answer), written with the real device SDK: piota trigger must follow it.
// The statuses it reports for a URI come from SCRIPTS, keyed on the URI's file name.
const SCRIPTS: Record<string, string[]> = {
  'fw.bin': ['waiting', 'downloading', 'rebooting-soon', 'applying', 'applyComplete'],
  // The words of the Node sample (azure-iot-sdk-node, dmpatterns_fwupdate_device.js).
  'sample-ok.bin': ['downloading', 'download complete', 'applying', 'apply firmware image complete'],
  'sample-download-fails.bin': ['downloading', 'Download image failed'],
  'sample-apply-fails.bin': ['downloading', 'download complete', 'applying', 'Apply image failed'],
};

let world: World;
let client: InstanceType<typeof deviceSdk.Client> | undefined;
beforeAll(async () => {
  world = await World.create();
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
      for (const status of SCRIPTS[new URL(uri).pathname.slice(1)]) {
        // Longer than trigger's 500 ms poll, so it sees each status.
        await new Promise((r) => setTimeout(r, 700));
        await report({ status, fwPackageUri: uri });
      }
    })();
  });
}, 60_000);
afterAll(async () => {
  await client?.close();
  await world?.close();
});

async function trigger(file: string) {
  const args = [piotaBin, 'trigger', '--hub-dir', world.hubDir, '--device', 'ms-sample', '--uri', `https://localhost/${file}`, '--json', '--timeout', '30'];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise((r) => child.on('exit', r));
  const events = out.trim().split('\n').map((l) => JSON.parse(l));
  return { code, out, events, statuses: events.filter((e) => e.event === 'status').map((e) => e.status) };
}

// The cases run in order on one device: each starts with the previous one's result on the twin.
describe('piota trigger and a device running Microsoft\'s sample', () => {
  it('follows its statuses, shows an unknown one as it is, and ends on applyComplete', async () => {
    const { code, out, events, statuses } = await trigger('fw.bin');
    expect(code, out).toBe(0);
    expect(events[0]).toMatchObject({ event: 'accepted', updateId: null, message: 'FirmwareUpdate started' });
    expect(statuses).toEqual(SCRIPTS['fw.bin']);
    expect(events.at(-1)).toMatchObject({ event: 'result', result: 'applyComplete', exitCode: 0 });
  });

  it.each([
    ['sample-ok.bin', 'applyComplete', 0],
    ['sample-download-fails.bin', 'downloadFailed', 1],
    ['sample-apply-fails.bin', 'applyFailed', 1],
  ])('ends on the Node sample\'s own words (%s): %s, exit %i', async (file, result, exitCode) => {
    const { code, out, events, statuses } = await trigger(file);
    expect(code, out).toBe(exitCode);
    expect(statuses).toEqual(SCRIPTS[file]);
    expect(events.at(-1)).toMatchObject({ event: 'result', result, exitCode });
  });
});
