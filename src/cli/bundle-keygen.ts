import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair } from '../bundle/keys.js';
import { writeFileDurably } from '../os/durable-file.js';
import { CommandError, parseCommandArgs, required, type Command } from './command.js';

const help = `Usage: piota bundle keygen --out DIR

Makes an ed25519 signing key pair:
  DIR/piota.key  the private key, PEM PKCS#8, mode 0600: keep it on the signing machine
  DIR/piota.pub  the public key, PEM SPKI: put it in each device's trusted keys

Keys made by openssl work the same way:
  openssl genpkey -algorithm ed25519 -out piota.key
  openssl pkey -in piota.key -pubout -out piota.pub

Options:
  --out DIR   directory to write into (created if missing); an existing piota.key is never overwritten
  -h, --help  this help`;

export const bundleKeygen: Command = {
  path: ['bundle', 'keygen'],
  summary: 'make an ed25519 key pair for signing bundles',
  help,
  async run(argv) {
    const { values } = parseCommandArgs(this, argv, { out: { type: 'string' } });
    const dir = required(this, values, 'out');
    const keyPath = join(dir, 'piota.key');
    const pubPath = join(dir, 'piota.pub');
    for (const path of [keyPath, pubPath]) {
      const exists = await access(path).then(() => true, () => false);
      if (exists) throw new CommandError(`${path} already exists; refusing to overwrite a key (choose another --out)`);
    }
    const pair = generateKeyPair();
    await writeFileDurably(keyPath, pair.privateKeyPem, { mode: 0o600, mkdirs: true });
    await writeFileDurably(pubPath, pair.publicKeyPem, { mode: 0o644 });
    process.stdout.write(`wrote ${keyPath} (private key, mode 0600)\nwrote ${pubPath} (public key)\nkey id ${pair.keyId}\n`);
    return 0;
  },
};
