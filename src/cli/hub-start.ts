import { CommandError, integerOption, parseCommandArgs, required, type Command } from './command.js';
import { DEFAULT_HOST, DEFAULT_HTTPS_PORT, DEFAULT_MQTT_PORT, hubJsonPath, startHub } from '../hub-emulator/index.js';
import { TIERS } from '../hub-emulator/throttle.js';

const help = `Usage: piota hub start --dir DIR [--host H] [--mqtt-port P] [--https-port Q] [--tier T [--units N]] [--quiet]

Runs a local Azure IoT Hub emulator until interrupted (Ctrl-C or SIGTERM). Unmodified
azure-iot-device (MQTT) and azure-iothub clients work against it: SAS authentication, device
twins, direct methods, the registry and twin REST API, device queries, jobs, automatic device
configurations, telemetry.

  --dir DIR         state directory: registry, twins, sessions, its CA and certificates; made if missing
  --host H          the name devices and services use to reach it (default ${DEFAULT_HOST}); the
                    server certificate carries it. Loopback names are served on 127.0.0.1 only.
  --mqtt-port P     device port, MQTT over TLS (default ${DEFAULT_MQTT_PORT}; 0 picks a free port)
  --https-port Q    service REST API port (default ${DEFAULT_HTTPS_PORT}; 0 picks a free port)
  --tier T          apply IoT Hub's throttles of tier free, S1, S2 or S3 (default: none): calls over a
                    limit get 429 ThrottlingException, jobs run at the tier's device-operation rate and
                    at most 1 (free, S1), 5 (S2) or 10 (S3) jobs are active at once
  --units N         units of that tier, 1 to 200 (default 1; the free tier has 1)
  --quiet           do not log connections, disconnections and refusals on stderr

Writes DIR/hub.json: {serviceConnectionString, caFile, host, mqttPort, httpsPort}.
Request rates per throttling category: GET https://HOST:Q/emulator/stats (with the service SAS token).
Register devices with: piota hub device add ID --dir DIR`;

export const hubStartCommand: Command = {
  path: ['hub', 'start'],
  help,
  async run(argv) {
    const { values } = parseCommandArgs(this, argv, {
      dir: { type: 'string' },
      host: { type: 'string' },
      'mqtt-port': { type: 'string' },
      'https-port': { type: 'string' },
      tier: { type: 'string' },
      units: { type: 'string' },
      quiet: { type: 'boolean' },
    });
    const dir = required(this, values, 'dir');
    const host = values.host ?? DEFAULT_HOST;
    if (!/^[A-Za-z0-9.:-]+$/.test(host)) throw new CommandError(`--host '${host}' is not a host name or address`, 2);
    const mqttPort = integerOption(this, 'mqtt-port', values['mqtt-port'], DEFAULT_MQTT_PORT, 0, 65535);
    const httpsPort = integerOption(this, 'https-port', values['https-port'], DEFAULT_HTTPS_PORT, 0, 65535);
    const tier = values.tier === undefined ? undefined : TIERS.find((t) => t.toLowerCase() === values.tier!.toLowerCase());
    if (values.tier !== undefined && !tier) throw new CommandError(`--tier '${values.tier}' must be one of ${TIERS.join(', ')}`, 2);
    if (values.units !== undefined && !tier) throw new CommandError('--units needs --tier', 2);
    const units = integerOption(this, 'units', values.units, 1, 1, tier === 'free' ? 1 : 200);
    const log = values.quiet ? undefined : (m: string) => process.stderr.write(`${new Date().toISOString()} ${m}\n`);
    let hub;
    try {
      hub = await startHub({ dir, host, mqttPort, httpsPort, log, tier, units });
    } catch (err) {
      throw new CommandError(`cannot start the hub: ${(err as Error).message}`);
    }
    process.stdout.write(
      `piota hub: devices on mqtts://${hub.info.host}:${hub.info.mqttPort}, service API on https://${hub.info.host}:${hub.info.httpsPort}\n` +
        `piota hub: ${hubJsonPath(dir)} written; CA ${hub.info.caFile}\n` +
        (tier ? `piota hub: throttling as ${units} unit(s) of tier ${tier}\n` : ''),
    );
    await new Promise<void>((resolve) => {
      const stop = () => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        resolve();
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
    await hub.close();
    process.stdout.write('piota hub: stopped\n');
    return 0;
  },
};
