import { bundleSlot } from '../image/slot-bundle.js';
import { describeBytes, readKeyFile } from './bundle-shared.js';
import { UsageError, integerOption, parseCommandArgs, required, type Command } from './command.js';
import { asImageCommand } from './image-shared.js';

const help = `Usage: piota image bundle IMAGE --slot A|B --key KEY --out FILE [--version V]
                         [--security-version N] [--compatible MODEL ...]

Makes the signed update bundle of one slot of an A/B image (piota image convert): its boot
partition as payload 'boot' and its root partition as 'rootfs', byte for byte, so the image that
is flashed and the update that follows come from one build. No root needed; IMAGE is only read.

Options:
  --slot A|B             the slot to bundle
  --key KEY              ed25519 private key (PEM) to sign with (piota bundle keygen)
  --version V            the bundle's version; default, and must equal, the slot's /etc/piota-release
  --security-version N   devices refuse a bundle whose N is lower than theirs (default 0)
  --compatible MODEL     a model it installs on (repeatable); default the image config's model
  --out FILE             the bundle to write (replaced only once complete)
  -h, --help             this help

Exit: 0 written, 1 refused (an image inspect finds problems in, a version that differs), 2 usage.`;

export const imageBundleCommand: Command = {
  path: ['image', 'bundle'],
  help,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      this,
      argv,
      {
        slot: { type: 'string' },
        key: { type: 'string' },
        version: { type: 'string' },
        'security-version': { type: 'string' },
        compatible: { type: 'string', multiple: true },
        out: { type: 'string' },
      },
      { min: 1, max: 1 },
    );
    const slot = required(this, values, 'slot');
    if (slot !== 'A' && slot !== 'B') throw new UsageError(`piota image bundle: --slot must be A or B, got '${slot}'`);
    const key = required(this, values, 'key');
    const out = required(this, values, 'out');
    const securityVersion = integerOption(this, 'security-version', values['security-version'], 0);
    const made = await asImageCommand('image bundle', async () =>
      bundleSlot({
        image: positionals[0]!,
        slot,
        out,
        version: values.version,
        signingKeys: [await readKeyFile(key, 'private key')],
        securityVersion,
        compatible: values.compatible,
      }),
    );
    const m = made.manifest;
    process.stdout.write(
      `created ${made.path}: ${describeBytes(m.bundleSize)}, slot ${slot} of ${positionals[0]}, version ${m.version}, compatible: ${m.compatible.join(', ')}\n` +
        m.payloads.map((p) => `  payload ${p.name}: ${describeBytes(p.imageSize)} sha256 ${p.imageSha256}\n`).join('') +
        `  signed by key ${made.signedBy.join(', ')}\n`,
    );
    return 0;
  },
};
