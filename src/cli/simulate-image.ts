import { CommandError, UsageError, parseCommandArgs, required, type Command } from './command.js';
import { addDevice } from '../hub-emulator/index.js';
import { imageSimLayout } from '../simulator/image/layout.js';
import { ImagePi, type UnitDropIn } from '../simulator/image/image-pi.js';
import { attachImage, checkHost, cleanUpLeftovers, dropConnectionString, ensureImageCopy } from '../simulator/image/power-on.js';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

const help = `Usage: piota simulate --image IMG --dir DIR --hub-dir HUBDIR --device ID [options]

A Pi in a box, with a real systemd: boots an A/B tryboot image (piota image convert) with
systemd-nspawn --boot (systemd as PID 1, journald, the installed units and the shipped
config), and plays the Pi firmware around it: autoboot.txt picks the slot, a reboot with
"0 tryboot" boots [tryboot] once, a power cut or any other reboot boots [all].
Needs root. Host architecture only: the image's programs run on this machine's CPU.

The image is copied to DIR/pi.img on the first run; later runs power the same Pi on again
from there (IMG is then not read). The device is registered with the hub in HUBDIR, and its
connection string is dropped on the bootconfig partition (piota-connection-string.txt), as
a user would after flashing, unless the data partition already holds it. Runs until the
system powers off, or SIGINT/SIGTERM (which power it off, SIGKILL after 60 s).

DIR holds sim.json (the board's state, with containerPid: SIGKILL of it is a power cut),
console.log (the container's console) and the rig's mounts; see docs/simulator.md.

Options:
  --image IMG            the image (first run)
  --dir DIR              the Pi's directory (created if missing)
  --hub-dir HUBDIR       the hub emulator's directory (piota hub start --dir)
  --device ID            the device id
  --dropin UNIT=FILE     a drop-in for one of the image's units, in force for every boot
                         (as systemctl edit --runtime); repeatable
  --fail-trial           the next trial boot hangs; the watchdog resets the board
  --watchdog-seconds N   how long a hung trial runs before the reset (default 10)`;

function parseDropIns(values: string[] | undefined): UnitDropIn[] {
  return (values ?? []).map((v) => {
    const eq = v.indexOf('=');
    const unit = v.slice(0, eq);
    const file = v.slice(eq + 1);
    if (eq <= 0 || !/^[A-Za-z0-9@._-]+\.(service|timer|socket|target|mount|path)$/.test(unit) || file === '') {
      throw new UsageError(`piota simulate: --dropin '${v}' must be UNIT=FILE, e.g. piota.service=watchdog.conf`);
    }
    if (!existsSync(file)) throw new UsageError(`piota simulate: --dropin ${unit}: no such file ${file}`);
    return { unit, file: resolve(file) };
  });
}

export const simulateImageCommand: Command = {
  path: ['simulate'],
  help,
  async run(argv) {
    const { values } = parseCommandArgs(this, argv, {
      image: { type: 'string' },
      dir: { type: 'string' },
      'hub-dir': { type: 'string' },
      device: { type: 'string' },
      dropin: { type: 'string', multiple: true },
      'fail-trial': { type: 'boolean' },
      'watchdog-seconds': { type: 'string' },
    });
    const dir = required(this, values, 'dir');
    const hubDir = required(this, values, 'hub-dir');
    const deviceId = required(this, values, 'device');
    const watchdog = Number(values['watchdog-seconds'] ?? '10');
    if (!Number.isFinite(watchdog) || watchdog <= 0) throw new UsageError(`piota simulate: --watchdog-seconds '${values['watchdog-seconds']}' must be a positive number`);
    const dropIns = parseDropIns(values.dropin);
    const layout = imageSimLayout(dir);
    const log = (line: string) => process.stdout.write(`piota simulate: ${line}\n`);

    let powered;
    try {
      await checkHost();
      if ((await ensureImageCopy(layout, values.image)) === 'copied') log(`copied ${values.image} to ${layout.image}`);
      await cleanUpLeftovers(layout, log);
      powered = await attachImage(layout);
    } catch (err) {
      throw new CommandError((err as Error).message);
    }
    let pi: ImagePi;
    try {
      const connectionString = await addDevice(hubDir, deviceId);
      if (await dropConnectionString(layout, powered.devices, connectionString)) log(`dropped the connection string of '${deviceId}' on the bootconfig partition`);
      pi = new ImagePi({ layout, devices: powered.devices, diskId: powered.diskId, hostname: deviceId.replace(/[^A-Za-z0-9-]/g, '-').slice(0, 63), dropIns, failTrial: values['fail-trial'] ?? false, watchdogMs: watchdog * 1000, log });
    } catch (err) {
      await powered.release();
      throw new CommandError((err as Error).message);
    }
    log(`device '${deviceId}' in ${layout.dir} (console: ${layout.consoleLog})`);
    pi.start();
    const onSignal = () => void pi.stop();
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    const exit = await pi.done;
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await powered.release();
    if (exit.code !== 0) throw new CommandError(exit.message ?? 'the simulation failed', exit.code);
    log('stopped');
    return 0;
  },
};
