import { CommandError, integerOption, parseCommandArgs, required, type Command } from './command.js';
import { DEFAULT_HOST, DEFAULT_HTTPS_PORT, DEFAULT_MQTT_PORT, hubJsonPath, startHub } from '../hub-emulator/index.js';

const help = `Usage: piota hub start --dir DIR [--host H] [--mqtt-port P] [--https-port Q] [--quiet]

Runs a local Azure IoT Hub emulator until interrupted (Ctrl-C or SIGTERM). Unmodified
azure-iot-device (MQTT) and azure-iothub clients work against it: SAS authentication, device
twins, direct methods, the registry and twin REST API, telemetry.

  --dir DIR         state directory: registry, twins, sessions, its CA and certificates; made if missing
  --host H          the name devices and services use to reach it (default ${DEFAULT_HOST}); the
                    server certificate carries it. Loopback names are served on 127.0.0.1 only.
  --mqtt-port P     device port, MQTT over TLS (default ${DEFAULT_MQTT_PORT}; 0 picks a free port)
  --https-port Q    service REST API port (default ${DEFAULT_HTTPS_PORT}; 0 picks a free port)
  --quiet           do not log refused connections and requests on stderr

Writes DIR/hub.json: {serviceConnectionString, caFile, host, mqttPort, httpsPort}.
Register devices with: piota hub device add ID --dir DIR`;

export const hubStartCommand: Command = {
  path: ['hub', 'start'],
  summary: 'run the local IoT Hub emulator',
  help,
  async run(argv) {
    const { values } = parseCommandArgs(this, argv, {
      dir: { type: 'string' },
      host: { type: 'string' },
      'mqtt-port': { type: 'string' },
      'https-port': { type: 'string' },
      quiet: { type: 'boolean' },
    });
    const dir = required(this, values, 'dir');
    const host = values.host ?? DEFAULT_HOST;
    if (!/^[A-Za-z0-9.:-]+$/.test(host)) throw new CommandError(`--host '${host}' is not a host name or address`, 2);
    const mqttPort = integerOption(this, 'mqtt-port', values['mqtt-port'], DEFAULT_MQTT_PORT, 0, 65535);
    const httpsPort = integerOption(this, 'https-port', values['https-port'], DEFAULT_HTTPS_PORT, 0, 65535);
    const log = values.quiet ? undefined : (m: string) => process.stderr.write(`${new Date().toISOString()} ${m}\n`);
    let hub;
    try {
      hub = await startHub({ dir, host, mqttPort, httpsPort, log });
    } catch (err) {
      throw new CommandError(`cannot start the hub: ${(err as Error).message}`);
    }
    process.stdout.write(
      `piota hub: devices on mqtts://${hub.info.host}:${hub.info.mqttPort}, service API on https://${hub.info.host}:${hub.info.httpsPort}\n` +
        `piota hub: ${hubJsonPath(dir)} written; CA ${hub.info.caFile}\n`,
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
