import { createRollout } from '../rollout/create.js';
import { checkRolloutName, checkTarget, parseDuration, parseRate, parseWaves, type RolloutDefinition } from '../rollout/definition.js';
import { RolloutError } from '../rollout/errors.js';
import { parseCommandArgs, required, UsageError, type Command } from './command.js';
import { DRIVE_HELP, DRIVE_OPTIONS, driveAndPrint } from './rollout-drive.js';
import { HUB_HELP, HUB_OPTIONS, openRolloutHub, ROLLOUT_EXIT, withRolloutErrors } from './rollout-shared.js';

export const rolloutStartCommand: Command = {
  path: ['rollout', 'start'],
  help: `Usage: piota rollout start NAME --uri URL --version V [--sha256 HEX] --target CONDITION
         --waves 1%,10%,50%,100% | 5,50,all --halt-failure-rate 5% --halt-min-failed N
         --wave-timeout 90s|10m|2h [--connect-timeout 30s] [--apply-now] [--detach]
         [--via job|configuration] [--hub-dir DIR | --connection-string CS] [--tier S1|S2|S3]

Creates a rollout of a release to the devices matching CONDITION, in cumulative waves, each wave
one IoT Hub job invoking firmwareUpdate (or, with --via configuration, one automatic device
configuration writing the release into the wave's desired properties), and drives it until it
completes, halts or is paused. It halts by itself (no further wave, waiting devices cancelled) as soon as the failure rate over the
waves started so far reaches --halt-failure-rate with at least --halt-min-failed failures. The
rollout lives in the hub: any workstation can follow it (status), pause, continue, abort or drive
it (run). See docs/rollouts.md.

Options:
  --uri URL                 the https URL of the bundle
  --version V               the version the bundle carries (devices check it)
  --sha256 HEX              pin the file at the URI to this sha256
  --target CONDITION        an IoT Hub query condition (what follows WHERE), e.g. "tags.site = 'lab'"
  --waves LIST              cumulative shares (1%,10%,50%,100%) or counts (5,50,all) of the devices
                            matching the target at start; a wave adding no device is skipped
  --halt-failure-rate R     halt when failed ÷ (failed + succeeded) reaches R (5% or 0.05)
  --halt-min-failed N       ...with at least N failed devices (default 1)
  --wave-timeout D          a wave ends when all its devices have a result, or after D
  --connect-timeout D       how long a wave's job waits for a disconnected device (0s-300s, default
                            30s); a device still away is offline, and gets the release as a desired
                            property, applied when it connects
  --apply-now               devices skip their maintenance window for this release
  --detach                  create the rollout and return; drive it with piota rollout run NAME
  --via job|configuration   job (default): one IoT Hub job per wave invoking firmwareUpdate;
                            configuration: one automatic device configuration per wave writing the
                            release into the devices' desired properties (offline devices apply it
                            when they connect; no S1 one-job limit; slower to react)
${HUB_HELP}
${DRIVE_HELP}

Exit codes: 0 completed (or created, with --detach); 1 halted; 2 usage or connection error;
3 aborted; 4 paused (or stopped driving); 5 a rollout of that name exists.`,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      this,
      argv,
      {
        ...HUB_OPTIONS,
        ...DRIVE_OPTIONS,
        uri: { type: 'string' },
        version: { type: 'string' },
        sha256: { type: 'string' },
        target: { type: 'string' },
        waves: { type: 'string' },
        'halt-failure-rate': { type: 'string' },
        'halt-min-failed': { type: 'string' },
        'wave-timeout': { type: 'string' },
        'connect-timeout': { type: 'string' },
        'apply-now': { type: 'boolean' },
        detach: { type: 'boolean' },
        via: { type: 'string' },
      },
      { min: 1, max: 1 },
    );
    const cmd = 'piota rollout start';
    return withRolloutErrors(cmd, async () => {
      const definition = definitionOf(this, positionals[0], values);
      const access = await openRolloutHub(cmd, values, 0.5);
      const stored = await createRollout(access.hub, access.store, definition, new Date());
      const r = stored.record;
      process.stdout.write(`rollout ${r.definition.name} created: ${r.targetedDevices} device(s) match ${r.definition.target}; waves reach ${r.waves.map((w) => w.cumulativeSize).join(', ')}\n`);
      if (values.detach) {
        process.stdout.write(`drive it with: piota rollout run ${r.definition.name}\n`);
        return ROLLOUT_EXIT.completed;
      }
      return driveAndPrint(access, r.definition.name, values, true);
    });
  },
};

type StartValues = Partial<Record<'uri' | 'version' | 'sha256' | 'target' | 'waves' | 'halt-failure-rate' | 'halt-min-failed' | 'wave-timeout' | 'connect-timeout' | 'via', string>> & { 'apply-now'?: boolean };

/** The definition from the command line; every mistake is a UsageError naming the option. */
export function definitionOf(command: Pick<Command, 'path'>, name: string, values: StartValues): RolloutDefinition {
  try {
    const uri = required(command, values, 'uri');
    if (!/^https:\/\//i.test(uri)) throw new RolloutError('badOption', `--uri '${uri}' must be an https:// URL (devices download over HTTPS only)`);
    const sha256 = values.sha256;
    if (sha256 !== undefined && !/^[0-9a-fA-F]{64}$/.test(sha256)) throw new RolloutError('badOption', `--sha256 must be 64 hex digits, got '${sha256}'`);
    const minFailedRaw = values['halt-min-failed'] ?? '1';
    if (!/^\d+$/.test(minFailedRaw) || Number(minFailedRaw) < 1) throw new RolloutError('badOption', `--halt-min-failed must be a whole number of at least 1, got '${minFailedRaw}'`);
    const via = values.via ?? 'job';
    if (via !== 'job' && via !== 'configuration') throw new RolloutError('badOption', `--via '${via}' must be job (one IoT Hub job per wave) or configuration (one automatic device configuration per wave)`);
    return {
      name: checkRolloutName(name),
      release: { fwPackageUri: uri, version: required(command, values, 'version'), ...(sha256 ? { sha256: sha256.toLowerCase() } : {}), applyNow: !!values['apply-now'] },
      target: checkTarget(required(command, values, 'target')),
      waves: parseWaves(required(command, values, 'waves')),
      halt: { failureRate: parseRate(required(command, values, 'halt-failure-rate')), minFailed: Number(minFailedRaw) },
      waveTimeoutMs: parseDuration(required(command, values, 'wave-timeout')),
      connectTimeoutS: Math.round(parseDuration(values['connect-timeout'] ?? '30s', '--connect-timeout', 0, 300_000) / 1000),
      via,
    };
  } catch (err) {
    if (err instanceof RolloutError) throw new UsageError(`piota rollout start: ${err.message}`);
    throw err;
  }
}
