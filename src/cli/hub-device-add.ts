import { CommandError, parseCommandArgs, required, type Command } from './command.js';
import { addDevice } from '../hub-emulator/index.js';

const help = `Usage: piota hub device add ID --dir DIR

Registers device ID with the emulator whose state is in DIR and prints its connection string
(HostName carries the MQTT port: HostName=<host>:<port>;DeviceId=ID;SharedAccessKey=...).
Works whether the hub runs or not; a running hub knows the device at once. If ID is already
registered, prints its existing connection string.

  ID         device id: up to 128 letters, digits and -.%_*?!(),:=@$'
  --dir DIR  the hub's state directory (as given to piota hub start)`;

export const hubDeviceAddCommand: Command = {
  path: ['hub', 'device', 'add'],
  summary: 'register a device with the emulator and print its connection string',
  help,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(this, argv, { dir: { type: 'string' } }, { min: 1, max: 1 });
    const dir = required(this, values, 'dir');
    let connectionString: string;
    try {
      connectionString = await addDevice(dir, positionals[0]);
    } catch (err) {
      throw new CommandError(`cannot add device: ${(err as Error).message}`);
    }
    process.stdout.write(connectionString + '\n');
    return 0;
  },
};
