import { EXIT, triggerAndFollow } from '../service/follow-update.js';
import { followPrinter } from '../service/follow-printer.js';
import { HubConnectionError, iothubService } from '../service/iothub-service.js';
import { CommandError, integerOption, parseCommandArgs, required, type Command } from './command.js';
import { hubTarget } from './hub-target.js';

export const triggerCommand: Command = {
  path: ['trigger'],
  help: `Usage: piota trigger --device ID --uri URL [--hub-dir DIR | --connection-string CS]
                     [--ca FILE] [--timeout S] [--sha256 HEX] [--version V] [--apply-now] [--json]

Invokes the direct method firmwareUpdate {"fwPackageUri": URL} on the device (azure-iothub),
then follows its twin every 500 ms, keyed on the updateId of the answer: each status change,
a live progress bar while downloading (plain lines when stdout is not a terminal), the result.

Options:
  --device ID               the device id
  --uri URL                 the https URL of the bundle
  --hub-dir DIR             the hub emulator's directory (reads DIR/hub.json)
  --connection-string CS    a hub's service connection string (default $IOTHUB_CONNECTION_STRING); port 443
  --ca FILE                 an extra CA to trust for the hub (with --connection-string)
  --timeout S               the whole operation, in seconds (default 1800)
  --sha256 HEX              pin the file at the URI to this sha256
  --version V               the version the bundle must carry
  --apply-now               skip the device's maintenance window for this update
  --json                    one JSON object per line: each event, the last one the result

Exit codes: 0 applyComplete; 1 downloadFailed or applyFailed; 2 usage or connection error;
3 the device refused (400/409, its message printed); 4 timeout; 5 device offline or unknown.`,
  async run(argv) {
    const { values } = parseCommandArgs(this, argv, {
      device: { type: 'string' },
      uri: { type: 'string' },
      'hub-dir': { type: 'string' },
      'connection-string': { type: 'string' },
      ca: { type: 'string' },
      timeout: { type: 'string' },
      sha256: { type: 'string' },
      version: { type: 'string' },
      'apply-now': { type: 'boolean' },
      json: { type: 'boolean' },
    });
    const deviceId = required(this, values, 'device');
    const uri = required(this, values, 'uri');
    const timeoutS = integerOption(this, 'timeout', values.timeout, 1800, 1, 7 * 24 * 3600);
    const target = await hubTarget('piota trigger', values['hub-dir'], values['connection-string'], values.ca);
    const payload: Record<string, unknown> = { fwPackageUri: uri };
    if (values.sha256) payload.sha256 = values.sha256;
    if (values.version) payload.version = values.version;
    if (values['apply-now']) payload.applyWindow = 'now';

    const print = followPrinter({ json: !!values.json, tty: !values.json && process.stdout.isTTY === true, write: (t) => process.stdout.write(t) });
    let service;
    try {
      service = iothubService(target);
    } catch (err) {
      throw new CommandError((err as Error).message, EXIT.usage);
    }
    try {
      const result = await triggerAndFollow(service, { deviceId, payload, timeoutMs: timeoutS * 1000, onEvent: print });
      return result.exitCode;
    } catch (err) {
      if (err instanceof HubConnectionError) throw new CommandError(err.message, EXIT.usage);
      throw err;
    }
  },
};

