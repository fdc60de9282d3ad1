import { signBundle } from '../bundle/sign.js';
import { parseCommandArgs, required, type Command } from './command.js';
import { asCommandError, readKeyFile } from './bundle-shared.js';

const help = `Usage: piota bundle sign FILE --key KEY

Adds a signature by KEY (ed25519, PEM PKCS#8) to the bundle FILE, in place. Signing is a step of
its own so that the private key can stay on a signing machine: make the bundle with
piota bundle create (without --key) on the build machine, sign it here. A bundle holds up to 16
signatures (several keys during a key rotation); signing again with the same key replaces its
signature. Only the signature area is rewritten: the payload is neither read nor changed.

Options:
  --key KEY   the private key to sign with
  -h, --help  this help`;

export const bundleSign: Command = {
  path: ['bundle', 'sign'],
  summary: 'add a signature to a bundle',
  help,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(this, argv, { key: { type: 'string' } }, { min: 1, max: 1 });
    const keyPath = required(this, values, 'key');
    const file = positionals[0];
    const signed = await asCommandError(async () => signBundle(file, await readKeyFile(keyPath, 'private key'), keyPath), file);
    const m = signed.manifest;
    process.stdout.write(
      `${signed.replaced ? 'replaced the signature of' : 'signed with'} key ${signed.keyId}: ${file}\n` +
        `  version ${m.version}, security version ${m.securityVersion}, compatible: ${m.compatible.join(', ')}; ` +
        `payloads: ${m.payloads.map((p) => p.name).join(', ')}\n` +
        `  signatures now: ${signed.signedBy.join(', ')}\n`,
    );
    return 0;
  },
};
