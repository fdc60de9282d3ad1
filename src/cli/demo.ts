import { runDemo } from '../demo/demo.js';
import { parseCommandArgs, type Command } from './command.js';

export const demoCommand: Command = {
  path: ['demo'],
  summary: 'the whole update loop on this machine, nothing to configure',
  help: `Usage: piota demo [--keep]

Starts an IoT Hub emulator, makes a signing key and a signed bundle (version 1.0.1),
serves it over HTTPS, starts a simulated Raspberry Pi at 1.0.0 running the real daemon,
and triggers the update with the same code as 'piota trigger', following it through the
trial reboot to applyComplete. Everything lives in a temporary directory and is removed
at the end (also on Ctrl-C).

Options:
  --keep   keep the temporary directory and say where it is

Exit code: as piota trigger (0 when the update completed).`,
  async run(argv) {
    const { values } = parseCommandArgs(this, argv, { keep: { type: 'boolean' } });
    const abort = new AbortController();
    const onSigint = () => abort.abort(new Error('interrupted'));
    process.once('SIGINT', onSigint);
    process.once('SIGTERM', onSigint);
    try {
      return await runDemo({ write: (t) => process.stdout.write(t), keep: values.keep, signal: abort.signal });
    } finally {
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigint);
    }
  },
};
