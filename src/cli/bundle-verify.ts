import { BundleError } from '../bundle/errors.js';
import { loadPublicKey } from '../bundle/keys.js';
import { verifyBundleFile } from '../bundle/verify-file.js';
import { UsageError, integerOption, parseCommandArgs, type Command } from './command.js';
import { describeBytes, readKeyFile } from './bundle-shared.js';

const help = `Usage: piota bundle verify FILE --pubkey PUB [--pubkey ...] [--model M] [--security-version N]

Checks a bundle the way a device does, and a little more: a signature by one of the trusted keys
holds over the manifest, the manifest is well formed, with --model the model is compatible, with
--security-version the bundle is not older than N, every chunk's sha256 holds and every payload's
image sha256 holds. Exit 0 only if all of that holds; otherwise exit 1 with one line on stderr:
  error <code>: <message>
Codes: malformed, unsupportedFormat, truncated, unsigned, untrustedKey, signatureInvalid,
incompatible, downgrade, hashMismatch, badKey, unreadable.

Options:
  --pubkey PUB            a trusted public key (PEM SPKI), repeatable
  --model M               the device model to check compatibility for
  --security-version N    refuse a bundle whose security version is below N (as a device at N would)
  -h, --help              this help`;

export const bundleVerify: Command = {
  path: ['bundle', 'verify'],
  summary: 'check a bundle: signature, compatibility and every hash',
  help,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      this,
      argv,
      { pubkey: { type: 'string', multiple: true }, model: { type: 'string' }, 'security-version': { type: 'string' } },
      { min: 1, max: 1 },
    );
    if (!values.pubkey?.length) throw new UsageError('piota bundle verify: --pubkey is required (see --help)');
    const securityVersion =
      values['security-version'] === undefined ? undefined : integerOption(this, 'security-version', values['security-version'], 0);
    const file = positionals[0];
    try {
      const trustedKeys = await Promise.all(values.pubkey.map((p) => readKeyFile(p, 'public key')));
      // Checked here too so that a bad key is named by its file, not by its position.
      trustedKeys.forEach((pem, i) => loadPublicKey(pem, values.pubkey![i]));
      const header = await verifyBundleFile(file, { trustedKeys, model: values.model, securityVersion });
      const m = header.manifest;
      const payloads = m.payloads.map((p) => `${p.name} ${describeBytes(p.imageSize)}`).join(', ');
      process.stdout.write(
        `ok: ${file} version ${m.version} (security version ${m.securityVersion}), signed by trusted key ${header.keyId}, ` +
          `${m.chunks.length} chunks verified; payloads: ${payloads}` +
          (values.model ? `; compatible with ${values.model}` : `; model not checked (compatible: ${m.compatible.join(', ')})`) +
          '\n',
      );
      return 0;
    } catch (err) {
      const line = err instanceof BundleError ? `error ${err.code}: ${err.message}` : unreadable(err, file);
      process.stderr.write(line + '\n');
      return 1;
    }
  },
};

function unreadable(err: unknown, file: string): string {
  const e = err as NodeJS.ErrnoException;
  if (e.code && e.syscall) return `error unreadable: cannot read ${e.path ?? file} (${e.code})`;
  throw err;
}
