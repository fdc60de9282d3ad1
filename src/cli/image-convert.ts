import { readFileSync } from 'node:fs';
import { convertImage } from '../image/convert.js';
import { DEFAULT_SIZES } from '../image/layout.js';
import { UsageError, parseCommandArgs, required, type Command } from './command.js';
import { asImageCommand, parseSizeFlag } from './image-shared.js';

const help = `Usage: piota image convert IN.img --out OUT.img --deb piota_X_all.deb --model MODEL
                          --trusted-key FILE [--trusted-key ...] [options]

Turns a Raspberry Pi OS image (MBR: a FAT boot partition, an ext4 root) into the A/B tryboot
image of docs/raspberry-pi.md: bootconfig (autoboot.txt), boot A and B, root A and B, data.
Each slot boots its own root, Raspberry Pi OS's first-boot resize is removed, piota is installed
and enabled offline (no program of the image is run), and the fleet config is written.
Needs root (loop devices, mounts). IN is only read; OUT appears only when complete.

Package
  --deb FILE                  the piota package (scripts/build-deb.sh)
  --install-deb FILE          another package for the image's architecture, unpacked first
                              (repeatable): Node.js 20+ and what it needs, when the image lacks it
Fleet config (as scripts/install.sh)
  --model NAME                the model bundles must be compatible with (e.g. raspberrypi5)
  --trusted-key FILE          a bundle-signing public key (repeatable)
  --slot-a SPEC, --slot-b SPEC  default boot=/dev/mmcblk0p2,rootfs=/dev/mmcblk0p5 and p3,p6
                              (an SSD: boot=/dev/nvme0n1p2,rootfs=/dev/nvme0n1p5 ...)
  --state-dir DIR             on the data partition (default /data/piota)
  --hub-ca FILE               CA of a hub with a private CA (copied, set as hubCaFile)
  --download-ca FILE          extra CA for bundle downloads (copied, set as downloadCaFile)
  --maintenance-window W      JSON {"cron":..,"durationMinutes":..,"timeZone":..} or none
  --connection-string CS|-    bake one device's connection string into the data partition
                              (0600; '-' reads stdin). Default: none, one image for a fleet
  --version V                 the image's version, written to /etc/piota-release
Layout (whole MiB or GiB; the defaults fit an 8 GB card)
  --bootconfig-size SIZE      default 64M
  --boot-size SIZE            each slot's boot partition, default 512M
  --root-size SIZE            each slot's root file system, default 2816M
  --data-size SIZE            default 512M
  --disk-id HEX               the disk identifier (8 hex digits; PARTUUIDs are HEX-NN), default random
  -h, --help                  this help

Exit: 0 converted, 1 input or flags refused (the reason on stderr) or a tool failed, 2 usage,
3 not root or a host tool missing. See docs/image.md.`;

export const imageConvertCommand: Command = {
  path: ['image', 'convert'],
  help,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      this,
      argv,
      {
        out: { type: 'string' },
        deb: { type: 'string' },
        'install-deb': { type: 'string', multiple: true },
        model: { type: 'string' },
        'trusted-key': { type: 'string', multiple: true },
        'slot-a': { type: 'string' },
        'slot-b': { type: 'string' },
        'state-dir': { type: 'string' },
        'hub-ca': { type: 'string' },
        'download-ca': { type: 'string' },
        'maintenance-window': { type: 'string' },
        'connection-string': { type: 'string' },
        version: { type: 'string' },
        'bootconfig-size': { type: 'string' },
        'boot-size': { type: 'string' },
        'root-size': { type: 'string' },
        'data-size': { type: 'string' },
        'disk-id': { type: 'string' },
      },
      { min: 1, max: 1 },
    );
    const name = 'image convert';
    const out = required(this, values, 'out');
    const deb = required(this, values, 'deb');
    const model = required(this, values, 'model');
    if (!values['trusted-key']?.length) throw new UsageError(`piota ${name}: --trusted-key is required: an image without a trusted key can never install an update (see --help)`);
    let connectionString = values['connection-string'];
    if (connectionString === '-') connectionString = readFileSync(0, 'utf8').split('\n')[0]!.replace(/\r$/, '');
    const sizes = {
      bootconfig: parseSizeFlag(name, 'bootconfig-size', values['bootconfig-size'], DEFAULT_SIZES.bootconfig),
      boot: parseSizeFlag(name, 'boot-size', values['boot-size'], DEFAULT_SIZES.boot),
      root: parseSizeFlag(name, 'root-size', values['root-size'], DEFAULT_SIZES.root),
      data: parseSizeFlag(name, 'data-size', values['data-size'], DEFAULT_SIZES.data),
    };
    const result = await asImageCommand(name, () =>
      convertImage(
        {
          input: positionals[0]!,
          out,
          deb,
          installDebs: values['install-deb'] ?? [],
          sizes,
          version: values.version,
          diskId: values['disk-id']?.toLowerCase().replace(/^0x/, ''),
          fleet: {
            model,
            trustedKeys: values['trusted-key']!,
            slotA: values['slot-a'],
            slotB: values['slot-b'],
            stateDir: values['state-dir'],
            hubCa: values['hub-ca'],
            downloadCa: values['download-ca'],
            maintenanceWindow: values['maintenance-window'],
            connectionString,
          },
        },
        (line) => process.stdout.write(`${line}\n`),
      ),
    );
    process.stdout.write(
      `converted: ${result.out} (disk ${result.diskId}); check it with: piota image inspect ${result.out}\n` +
        (connectionString === undefined ? 'no connection string baked in: provision each device after flashing (docs/image.md)\n' : ''),
    );
    return 0;
  },
};
