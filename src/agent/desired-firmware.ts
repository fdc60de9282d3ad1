import type { Logger } from 'pino';
import { isTerminal, type DeviceState } from './device-state.js';
import { desiredFirmwareId, parseDesiredFirmware, PayloadError } from './firmware-update-request.js';
import { redactUri } from './redact-uri.js';
import type { UpdateDoor } from './update-door.js';

/**
 * What the device decided about a desired release (docs/update-workflow.md, "The desired-property
 * trigger"), persisted in the state file beside the update (`desiredFirmware`) so that each `id` is
 * acted on once, across restarts and reboots, and reported as `piota.firmware`.
 * - `accepted`: an update was started for it (`updateId`), or the update already running had its URI;
 * - `alreadyRunning`: its version was running already: nothing to do;
 * - `refused`: the desired object is invalid (`message` says what).
 */
export interface DesiredFirmwareRecord {
  desiredId: string | null;
  updateId: string | null;
  decision: 'accepted' | 'alreadyRunning' | 'refused';
  message: string | null;
  at: string;
}

/** The state file's field for it (kept by older agents, which keep fields they do not know). */
export type StateWithDesired = DeviceState & { desiredFirmware?: DesiredFirmwareRecord | null };

export interface DesiredFirmwareDeps {
  state: DeviceState;
  door: UpdateDoor;
  /** The version running now (a release of that version is not applied again). */
  runningVersion(): string;
  statusChanged(): void;
  logger: Logger;
  now?: () => number;
}

/** The reported picture of the last decision: `piota.firmware` (null before any). */
export function desiredFirmwareReport(state: DeviceState): DesiredFirmwareRecord | null {
  return (state as StateWithDesired).desiredFirmware ?? null;
}

/**
 * The desired-property trigger: applies the release in `properties.desired.piota.firmware` when the
 * device connects and whenever the desired properties change, once per `id`, through the same door,
 * workflow and reports as the `firmwareUpdate` method. It never interrupts an update: a release that
 * arrives while another update runs waits until that update ends.
 */
export class DesiredFirmwareTrigger {
  private latest: unknown = undefined;
  private stopped = false;

  constructor(private readonly deps: DesiredFirmwareDeps) {}

  /** The hub's whole desired document (on connect, and after every patch). */
  desiredChanged(desired: unknown): Promise<void> {
    const piota = isObject(desired) ? desired.piota : undefined;
    this.latest = isObject(piota) ? piota.firmware : undefined;
    return this.evaluate();
  }

  /** The current update ended: a release that waited for it may go now. */
  updateEnded(): Promise<void> {
    return this.evaluate();
  }

  stop(): void {
    this.stopped = true;
  }

  private evaluate(): Promise<void> {
    return this.deps.door.exclusive(() => this.decide()).catch((err: Error) => {
      this.deps.logger.error({ err: err.message }, 'the desired firmware release could not be acted on');
    });
  }

  private async decide(): Promise<void> {
    const value = this.latest;
    // No release desired (never written, or removed with null): nothing to do.
    if (value === undefined || value === null || this.stopped) return;
    const { state, logger } = this.deps;
    const last = desiredFirmwareReport(state);
    const id = desiredFirmwareId(value);
    let desired;
    try {
      desired = parseDesiredFirmware(value);
    } catch (err) {
      if (!(err instanceof PayloadError)) throw err;
      // Refused once per id (or once per message when there is no usable id): no log or report loop.
      if (last?.decision === 'refused' && last.desiredId === id && (id !== null || last.message === err.message)) return;
      logger.warn({ desiredId: id, reason: err.message }, 'desired firmware release refused: bad desired properties');
      await this.record({ desiredId: id, updateId: null, decision: 'refused', message: err.message });
      return;
    }
    if (last?.desiredId === desired.id) return;
    const current = state.update;
    const { request } = desired;
    if (current && !isTerminal(current.phase)) {
      if (current.fwPackageUri === request.fwPackageUri) {
        await this.record({ desiredId: desired.id, updateId: current.updateId, decision: 'accepted', message: 'the update already running has this URI' });
        return;
      }
      logger.info({ desiredId: desired.id, running: current.updateId }, 'desired firmware release waits for the running update to end');
      return;
    }
    if (request.version !== null && request.version === this.deps.runningVersion()) {
      logger.info({ desiredId: desired.id, version: request.version }, 'desired firmware release already running');
      await this.record({ desiredId: desired.id, updateId: null, decision: 'alreadyRunning', message: `version ${request.version} is running` });
      return;
    }
    logger.info({ desiredId: desired.id, fwPackageUri: redactUri(request.fwPackageUri) }, 'desired firmware release: starting the update');
    // The update and its record are saved in one write; when that fails neither is, and the next
    // connect or desired patch tries again.
    await this.deps.door.begin(request, (update) => ({
      desiredFirmware: this.recordOf({ desiredId: desired.id, updateId: update.updateId, decision: 'accepted', message: null }),
    }));
  }

  private recordOf(r: Omit<DesiredFirmwareRecord, 'at'>): DesiredFirmwareRecord {
    return { ...r, at: new Date((this.deps.now ?? Date.now)()).toISOString() };
  }

  /** Persists a decision that starts no update; reported once saved. */
  private async record(r: Omit<DesiredFirmwareRecord, 'at'>): Promise<void> {
    const desiredFirmware = this.recordOf(r);
    await this.deps.door.deps.save({ ...this.deps.state, desiredFirmware } as StateWithDesired);
    (this.deps.state as StateWithDesired).desiredFirmware = desiredFirmware;
    this.deps.statusChanged();
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
