import { mkdir } from 'node:fs/promises';
import { CommandError, UsageError, parseCommandArgs, required, type Command } from './command.js';
import { readDaemonConfigOverrides } from './daemon-config-overrides.js';
import { simLayout, createLayout } from '../simulator/layout.js';
import { parseSize } from '../simulator/size.js';
import { startSimulator } from '../simulator/simulator.js';
import { requestReboot } from '../simulator/reboot-channel.js';
import { ensureConnectionString } from '../simulator/connection-string.js';
import { addDevice } from '../hub-emulator/index.js';
import {
  daemonCommand,
  existingFile,
  firmwareConfigOf,
  simulatedDaemonConfig,
  writeDaemonConfig,
} from '../simulator/daemon-config.js';

const help = `Usage: piota simulate --dir DIR --hub-dir HUBDIR --device ID --pubkey PUB [options]

A simulated Raspberry Pi: plays the Pi firmware's A/B tryboot rules around a real
'piota daemon' child process, until stopped with Ctrl-C (SIGINT) or SIGTERM.

In DIR it keeps the "SD card" (slots/{A,B}-{boot,rootfs}.img, bootconfig/autoboot.txt),
the device tree (device-tree/chosen/bootloader/{partition,tryboot}), the daemon's state
(data/, with data/connection-string), the daemon config (config.json), sim.json (the board's
state, rewritten at every change) and daemon.log (the daemon's stdout and stderr, appended).
Running it again on the same DIR powers the same Pi on again.

Options:
  --dir DIR              the simulated Pi's directory (created if missing)
  --hub-dir HUBDIR       the hub emulator's directory (piota hub start --dir): the device is
                         registered there and the daemon trusts its CA
  --device ID            the device id
  --pubkey PUB           the bundle-signing public key the daemon trusts
  --download-ca FILE     a CA the daemon trusts for the download server
  --version V            the version the Pi runs before its first update (default 1.0.0)
  --model M              the device model bundles must be compatible with (default raspberrypi4-64)
  --slot-size SIZE       size of each slot partition file, e.g. 64M (default 64M, sparse)
  --fail-trial           the next trial boot hangs; a simulated watchdog resets the board after
                         a few seconds, which boots the committed slot
  --daemon-config FILE   a JSON object merged into the daemon config the simulator writes

Firmware rules: a reboot with tryboot boots autoboot.txt's [tryboot] partition once with
tryboot=1; any other boot, a power cut or a reset boots [all] with tryboot=0. SIGKILL of the
daemon is a power cut (the board boots again); any other exit is a crash (restarted without a
reboot; 5 crashes within 60 s end the simulation with exit 1).

Test hook: PIOTA_SIM_DAEMON replaces 'node bin/piota.js daemon' with another command (an
executable path, or a JSON array argv); '--config FILE' is appended.`;

const rebootHelp = `Usage: piota simulate reboot --dir DIR [--tryboot]

Asks the simulated Pi running in DIR to reboot (the simulated 'systemctl reboot'): exits 0 once
the simulator accepted; it then stops the daemon and boots again by the firmware's rules.

Options:
  --dir DIR     the simulated Pi's directory
  --tryboot     boot autoboot.txt's [tryboot] partition once (as 'systemctl reboot --reboot-argument="0 tryboot"')`;

export const simulateCommand: Command = {
  path: ['simulate'],
  help,
  async run(argv) {
    if (argv.includes('--image')) return (await import('./simulate-image.js')).simulateImageCommand.run(argv); // a Pi in a box: docs/simulator.md
    if (argv.includes('--count')) return (await import('./simulate-fleet.js')).simulateFleetCommand.run(argv); // a fleet in one process: docs/simulator.md
    const { values } = parseCommandArgs(this, argv, {
      dir: { type: 'string' },
      'hub-dir': { type: 'string' },
      device: { type: 'string' },
      pubkey: { type: 'string' },
      'download-ca': { type: 'string' },
      version: { type: 'string' },
      model: { type: 'string' },
      'slot-size': { type: 'string' },
      'fail-trial': { type: 'boolean' },
      'daemon-config': { type: 'string' },
    });
    const dir = required(this, values, 'dir');
    const hubDir = required(this, values, 'hub-dir');
    const deviceId = required(this, values, 'device');
    const pubkeyArg = required(this, values, 'pubkey');
    if (!/^[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}$/.test(deviceId)) {
      throw new UsageError(`piota simulate: --device '${deviceId}' is not a valid device id (1-128 letters, digits or -.%_*?!(),:=@$')`);
    }
    const version = values.version ?? '1.0.0';
    const model = values.model ?? 'raspberrypi4-64';
    for (const [name, v] of [['version', version], ['model', model]] as const) {
      if (!/^[^\s]{1,64}$/.test(v)) throw new UsageError(`piota simulate: --${name} '${v}' must be 1-64 characters without spaces`);
    }
    let slotSize: number;
    try {
      slotSize = parseSize(values['slot-size'] ?? '64M');
    } catch (err) {
      throw new UsageError(`piota simulate: --slot-size: ${(err as Error).message}`);
    }
    const fail = (err: unknown) => {
      throw err instanceof CommandError || err instanceof UsageError ? err : new CommandError((err as Error).message);
    };
    const layout = simLayout(dir);
    const sim = await (async () => {
      const pubkey = await existingFile(pubkeyArg, '--pubkey');
      const downloadCa = values['download-ca'] ? await existingFile(values['download-ca'], '--download-ca') : undefined;
      const overrides = values['daemon-config'] ? await readDaemonConfigOverrides(values['daemon-config']) : undefined;
      const config = await simulatedDaemonConfig({ layout, hubDir, deviceId, pubkey, downloadCa, version, model, overrides });
      const firmware = firmwareConfigOf(config, values['daemon-config'] ?? layout.configFile);
      await mkdir(layout.dir, { recursive: true });
      await createLayout(layout, slotSize, firmware);
      if (typeof config.stateDir !== 'string') throw new CommandError(`${values['daemon-config']}: stateDir must be a path`);
      await mkdir(config.stateDir, { recursive: true, mode: 0o700 });
      await ensureConnectionString(config.stateDir, hubDir, deviceId, addDevice);
      await writeDaemonConfig(layout.configFile, config);
      process.stdout.write(`piota simulate: device '${deviceId}' in ${layout.dir} (daemon log: ${layout.daemonLog})\n`);
      return startSimulator({
        dir: layout.dir,
        firmware,
        simJson: layout.simJson,
        socket: layout.socket,
        daemonLog: layout.daemonLog,
        daemonCommand: daemonCommand(layout.configFile),
        failTrial: values['fail-trial'] ?? false,
        log: (line) => process.stdout.write(`piota simulate: ${line}\n`),
      });
    })().catch(fail);
    const onSignal = () => void sim.stop();
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    const exit = await sim.done;
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (exit.code !== 0) throw new CommandError(exit.message ?? 'the simulation failed', exit.code);
    process.stdout.write('piota simulate: stopped\n');
    return 0;
  },
};

export const simulateRebootCommand: Command = {
  path: ['simulate', 'reboot'],
  help: rebootHelp,
  async run(argv) {
    const { values } = parseCommandArgs(this, argv, { dir: { type: 'string' }, tryboot: { type: 'boolean' } });
    const dir = required(this, values, 'dir');
    try {
      await requestReboot(simLayout(dir).socket, { tryboot: values.tryboot ?? false });
    } catch (err) {
      throw new CommandError((err as Error).message);
    }
    return 0;
  },
};
