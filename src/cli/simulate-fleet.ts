import { CommandError, UsageError, integerOption, parseCommandArgs, required, type Command } from './command.js';
import { readDaemonConfigOverrides } from './daemon-config-overrides.js';
import { existingFile } from '../simulator/daemon-config.js';
import { parseSize } from '../simulator/size.js';
import { startFleet } from '../simulator/fleet/fleet.js';
import { parseTags } from '../simulator/fleet/fleet-registration.js';
import { packageVersion } from './version.js';

const help = `Usage: piota simulate --count N --device-prefix P --hub-dir HUBDIR --pubkey PUB [options]

A fleet of N simulated Raspberry Pis, devices P-1 … P-N, in ONE process: each runs the real
agent as an instance (its own slots, state directory and device identity), all sharing one
load of the agent and the Azure SDKs, until stopped with Ctrl-C (SIGINT) or SIGTERM.

Each device is registered with the hub emulator in HUBDIR (its twin tagged with --tag) and
keeps in DIR/P-i/ its slot files (small: --slot-size), its state (data/) and board.json (the
committed slot and the [tryboot] slot). DIR/fleet.log has every agent's log lines (a 'device'
field each); DIR/fleet.json lists the devices, their seeded role and where each is.

What the fleet fakes: the boot firmware is a small in-process stand-in (tryboot boots the new
slot once as a trial, any other boot the committed slot; a reboot restarts the agent instance).
Power cuts, autoboot.txt, the device tree and the reboot command are the one-Pi simulator's
(piota simulate --dir).

Options:
  --count N                 how many devices (1 to 10000)
  --device-prefix P         device ids are P-1 … P-N
  --hub-dir HUBDIR          the hub emulator's directory (piota hub start --dir); the hub must run
                            when --tag is given
  --pubkey PUB              the bundle-signing public key the agents trust
  --dir DIR                 the fleet's directory (default: fleet-P in the current directory);
                            running again on the same DIR powers the same fleet on again
  --tag KEY=VALUE           a twin tag on every device (repeatable; a dotted key nests:
                            piota.ring=canary sets tags.piota.ring)
  --seed S                  picks which devices fail or stay offline (default 1): the same seed
                            picks the same devices
  --download-ca FILE        a CA the agents trust for the download server
  --version V               the version each device runs before its first update (default 1.0.0)
  --model M                 the model bundles must be compatible with (default raspberrypi4-64)
  --slot-size SIZE          each slot partition file, e.g. 64K (default 64K, sparse)
  --fail-trial-ratio R      this share of devices (0 to 1, or a percentage: 10%) hangs in every
                            trial boot; a simulated watchdog resets the board, which boots the
                            committed slot: the update ends applyFailed (trialFailed)
  --fail-download-ratio R   this share of devices has every download refused (403): the
                            update ends downloadFailed (downloadError)
  --offline-ratio R         this share of devices stays powered off (never connects) until
                            SIGUSR2 is sent to this process or --offline-for has passed
  --offline-for SECONDS     bring the offline devices online after this many seconds
  --daemon-config FILE      a JSON object merged into every agent's config
  --log-level L             the agents' log level (default info)

The three ratios pick disjoint sets of exactly round(N x R) devices each.`;

/** A share: 0 to 1, or a percentage ("10%"). */
function parseRatio(name: string, raw: string | undefined): number {
  if (raw === undefined) return 0;
  const m = /^(\d+(?:\.\d+)?)(%?)$/.exec(raw.trim());
  const value = m ? Number(m[1]) / (m[2] ? 100 : 1) : NaN;
  if (!(value >= 0 && value <= 1)) throw new UsageError(`piota simulate: --${name} must be a share from 0 to 1 or a percentage (10%), got '${raw}'`);
  return value;
}

export const simulateFleetCommand: Command = {
  path: ['simulate'],
  help,
  async run(argv) {
    const { values } = parseCommandArgs(this, argv, {
      count: { type: 'string' },
      'device-prefix': { type: 'string' },
      'hub-dir': { type: 'string' },
      pubkey: { type: 'string' },
      dir: { type: 'string' },
      tag: { type: 'string', multiple: true },
      seed: { type: 'string' },
      'download-ca': { type: 'string' },
      version: { type: 'string' },
      model: { type: 'string' },
      'slot-size': { type: 'string' },
      'fail-trial-ratio': { type: 'string' },
      'fail-download-ratio': { type: 'string' },
      'offline-ratio': { type: 'string' },
      'offline-for': { type: 'string' },
      'daemon-config': { type: 'string' },
      'log-level': { type: 'string' },
    });
    const count = integerOption(this, 'count', required(this, values, 'count'), 0, 1, 10_000);
    const prefix = required(this, values, 'device-prefix');
    const hubDir = required(this, values, 'hub-dir');
    const pubkeyArg = required(this, values, 'pubkey');
    const seed = integerOption(this, 'seed', values.seed, 1, 0, 2 ** 32 - 1);
    const offlineForS = values['offline-for'] === undefined ? undefined : integerOption(this, 'offline-for', values['offline-for'], 0, 0, 86_400);
    let tags;
    let slotSize;
    try {
      tags = parseTags(values.tag ?? []);
      slotSize = parseSize(values['slot-size'] ?? '64K');
    } catch (err) {
      throw new UsageError(`piota simulate: ${(err as Error).message}`);
    }
    const ratios = {
      failTrialRatio: parseRatio('fail-trial-ratio', values['fail-trial-ratio']),
      failDownloadRatio: parseRatio('fail-download-ratio', values['fail-download-ratio']),
      offlineRatio: parseRatio('offline-ratio', values['offline-ratio']),
    };
    const fleet = await (async () => {
      const pubkey = await existingFile(pubkeyArg, '--pubkey');
      const downloadCa = values['download-ca'] ? await existingFile(values['download-ca'], '--download-ca') : undefined;
      const daemonConfig = values['daemon-config'] ? await readDaemonConfigOverrides(values['daemon-config']) : undefined;
      return startFleet({
        dir: values.dir ?? `fleet-${prefix}`,
        hubDir,
        count,
        prefix,
        pubkey,
        tags: Object.keys(tags).length > 0 ? tags : undefined,
        seed,
        downloadCa,
        version: values.version,
        model: values.model,
        slotSize,
        ...ratios,
        agentVersion: packageVersion(),
        logLevel: values['log-level'],
        daemonConfig,
      });
    })().catch((err: unknown) => {
      throw err instanceof CommandError || err instanceof UsageError ? err : new CommandError(`piota simulate: ${(err as Error).message}`);
    });
    const offline = fleet.devices.filter((d) => d.role === 'offline').length;
    process.stdout.write(
      `piota simulate: ${count} devices ${prefix}-1 … ${prefix}-${count} in ${fleet.dir} (pid ${process.pid}; log ${fleet.dir}/fleet.log, devices ${fleet.dir}/fleet.json)` +
        (offline ? `; ${offline} offline until ${offlineForS !== undefined ? `${offlineForS} s have passed or ` : ''}SIGUSR2` : '') +
        '\n',
    );
    const bringOnline = () => {
      process.stdout.write('piota simulate: bringing the offline devices online\n');
      void fleet.bringOnline();
    };
    const offlineTimer = offline && offlineForS !== undefined ? setTimeout(bringOnline, offlineForS * 1000) : undefined;
    process.on('SIGUSR2', bringOnline);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    clearTimeout(offlineTimer);
    process.off('SIGUSR2', bringOnline);
    await fleet.stop();
    process.stdout.write('piota simulate: stopped\n');
    // Every agent stopped within its bound; a device-SDK close still finishing in the background
    // must not keep the process alive (as for piota daemon).
    process.exit(0);
  },
};
