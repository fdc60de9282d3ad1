import { ConfigError, loadConfig } from '../agent/config.js';
import { isTerminal, reportedStatus, targetVersion, updateProgress } from '../agent/device-state.js';
import { desiredFirmwareReport } from '../agent/desired-firmware.js';
import { StateStore } from '../agent/state-store.js';
import { runningVersion } from '../agent/inventory.js';
import { applyTimeOf } from '../agent/apply-window.js';
import { MaintenanceSchedule } from '../agent/maintenance-window.js';
import { TrybootBackend } from '../boot/tryboot.js';
import { CommandError, parseCommandArgs, type Command } from './command.js';
import { configPath, DEFAULT_CONFIG } from './config-path.js';

export const statusCommand: Command = {
  path: ['status'],
  help: `Usage: piota status [--config FILE] [--json]

Shows the booted and committed slot, the version in each slot, the update in
progress with its progress, and the last update's result. Reads the state directory
and the boot configuration; works whether the daemon runs or not.

Options:
  --config FILE   the daemon configuration (default: $PIOTA_CONFIG, else ${DEFAULT_CONFIG})
  --json          one JSON object (shape in docs/status.md)

With a maintenanceWindow in the config it shows the window, whether it is open
and when it next opens; an update waiting for it shows when it will apply. A
release set in the twin's desired properties shows what the device decided.`,
  async run(argv) {
    const { values } = parseCommandArgs(this, argv, { config: { type: 'string' }, json: { type: 'boolean' } });
    let config;
    try {
      config = await loadConfig(configPath(values.config));
    } catch (err) {
      if (err instanceof ConfigError) throw new CommandError(err.message, 2);
      throw err;
    }
    const state = await new StateStore(config.stateDir).read().catch((err: Error) => {
      throw new CommandError(err.message);
    });
    const boot = new TrybootBackend(config.boot);
    const bootFact = async <T>(what: string, f: () => Promise<T>): Promise<T> =>
      f().catch((err: Error) => {
        throw new CommandError(`cannot tell the ${what}: ${err.message}`);
      });
    const bootedSlot = await bootFact('booted slot', () => boot.bootedSlot());
    const committedSlot = await bootFact('committed slot', () => boot.committedSlot());
    const trialBoot = await bootFact('trial state', () => boot.isTrialBoot());
    const u = state.update;
    const now = Date.now();
    const schedule = config.maintenanceWindow ? new MaintenanceSchedule(config.maintenanceWindow) : null;
    const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
    const window = schedule && {
      cron: schedule.cron,
      durationMinutes: schedule.durationMinutes,
      timeZone: schedule.timeZone,
      open: schedule.isOpen(now),
      nextOpening: iso(schedule.nextOpening(now)),
    };
    const applyAt = applyTimeOf(schedule, u, now);
    schedule?.dispose();
    const describe = u && {
      updateId: u.updateId,
      status: reportedStatus(u.phase),
      phase: u.phase,
      fwPackageUri: u.fwPackageUri,
      fromSlot: u.fromSlot,
      targetSlot: u.targetSlot,
      targetVersion: targetVersion(u),
      progress: updateProgress(u),
      error: u.error,
      times: u.times,
      waitingFor: applyAt ? ('applyWindow' as const) : null,
      applyAt,
    };
    const report = {
      model: config.model,
      bootedSlot,
      committedSlot,
      trialBoot,
      runningVersion: await runningVersion(config, state, bootedSlot),
      slots: state.slots,
      maintenanceWindow: window,
      update: u && !isTerminal(u.phase) ? describe : null,
      lastResult: u && isTerminal(u.phase) ? describe : null,
      desiredFirmware: desiredFirmwareReport(state),
    };
    if (values.json) {
      process.stdout.write(JSON.stringify(report, null, 2) + '\n');
      return 0;
    }
    const lines = [
      `model:          ${report.model}`,
      `running:        ${report.runningVersion} (slot ${bootedSlot}${trialBoot ? ', trial boot' : ''})`,
      `committed slot: ${committedSlot}`,
    ];
    for (const s of ['A', 'B'] as const) {
      const r = state.slots[s];
      lines.push(`slot ${s}:         ${r ? `${r.version} (installed ${r.installedAt})` : 'not installed by piota'}`);
    }
    if (window) {
      lines.push(`window:         ${window.cron} for ${window.durationMinutes} min (${window.timeZone}); ${window.open ? 'open now' : 'closed'}, next opening ${window.nextOpening ?? 'none within four years'}`);
    } else {
      lines.push('window:         none (updates apply as soon as downloaded)');
    }
    const d = describe;
    if (d && report.update) {
      const p = d.progress;
      lines.push(`update:         ${d.status} ${d.targetVersion ?? ''} into slot ${d.targetSlot} (${d.updateId})`);
      if (p.totalBytes) lines.push(`progress:       ${p.bytes} of ${p.totalBytes} bytes (${p.percent}%)`);
      if (d.applyAt) lines.push(`waiting for:    the maintenance window; applies at ${d.applyAt}`);
    } else {
      lines.push('update:         none in progress');
    }
    if (d && report.lastResult) {
      lines.push(`last result:    ${d.status}${d.targetVersion ? ` ${d.targetVersion}` : ''}${d.error ? ` — ${d.error.code}: ${d.error.message}` : ''} (${d.updateId})`);
    }
    const f = report.desiredFirmware;
    if (f) {
      lines.push(`desired:        ${f.desiredId ?? '(an unusable id)'} ${f.decision}${f.updateId ? ` as update ${f.updateId}` : ''}${f.message ? ` — ${f.message}` : ''} (${f.at})`);
    }
    process.stdout.write(lines.join('\n') + '\n');
    return 0;
  },
};
