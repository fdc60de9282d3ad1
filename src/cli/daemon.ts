import { ConfigError, loadConfig } from '../agent/config.js';
import { AlreadyRunningError } from '../agent/single-instance.js';
import { StateFileError } from '../os/state-file.js';
import { createLogger } from '../os/logger.js';
import { CommandError, parseCommandArgs, type Command } from './command.js';
import { packageVersion } from './version.js';
import { configPath, DEFAULT_CONFIG } from './config-path.js';


export const daemonCommand: Command = {
  path: ['daemon'],
  help: `Usage: piota daemon [--config FILE]

Runs the device agent: answers the IoT Hub direct methods firmwareUpdate and
firmwareUpdateCancel, carries updates through download, verification, trial boot
and commit, and reports progress in the twin's reported properties.

Options:
  --config FILE   the daemon configuration (default: $PIOTA_CONFIG, else ${DEFAULT_CONFIG})

The device connection string is read from <stateDir>/connection-string.
Logs are JSON lines on stdout (with syslog priorities under systemd).
Exit codes: 0 stopped by SIGTERM/SIGINT; 2 configuration error; 1 any other start-up failure,
or the single-instance lock was lost (another daemon may hold it).`,
  async run(argv) {
    const { values } = parseCommandArgs(this, argv, { config: { type: 'string' } });
    const path = configPath(values.config);
    let config;
    try {
      config = await loadConfig(path);
    } catch (err) {
      if (err instanceof ConfigError) throw new CommandError(err.message, 2);
      throw err;
    }
    const logger = createLogger({ level: config.logLevel });
    // A bug must reach the journal as one JSON line, and systemd restarts the daemon (state is on disk).
    const fatal = (kind: string) => (err: unknown) => {
      logger.fatal({ err: err instanceof Error ? { message: err.message, stack: err.stack } : String(err) }, kind);
      process.exit(1);
    };
    process.on('uncaughtException', fatal('uncaught exception'));
    process.on('unhandledRejection', fatal('unhandled promise rejection'));
    // Loaded here, not at the top: `piota daemon --help` and a bad config need none of the SDK.
    const { DaemonStartError, startDaemon } = await import('../agent/daemon.js');
    let daemon;
    try {
      daemon = await startDaemon(config, logger, packageVersion());
    } catch (err) {
      if (err instanceof DaemonStartError || err instanceof AlreadyRunningError || err instanceof StateFileError) {
        logger.fatal({ err: err.message }, 'cannot start');
        throw new CommandError(err.message, 1);
      }
      throw err;
    }
    const onSignal = (signal: string) => {
      logger.info({ signal }, 'stop requested');
      void daemon.stop();
    };
    process.once('SIGTERM', () => onSignal('SIGTERM'));
    process.once('SIGINT', () => onSignal('SIGINT'));
    const exit = await daemon.stopped;
    // Every part stopped within its bound; what the device SDK may still be closing in the background
    // must not keep the process (and so systemd's shutdown or reboot) waiting.
    process.exit(exit.reason === 'stopped' ? 0 : 1);
  },
};
