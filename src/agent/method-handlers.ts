import { isTerminal, reportedStatus } from './device-state.js';
import { parseFirmwareUpdateRequest, PayloadError } from './firmware-update-request.js';
import type { MethodAnswer } from './hub-link.js';
import { redactUri } from './redact-uri.js';
import { UpdateDoor, type UpdateDoorDeps } from './update-door.js';

export type { UpdateDriver } from './update-door.js';

/** The handlers' needs: those of the update door, and the door itself when it is shared (with the desired-property trigger). */
export interface MethodDeps extends UpdateDoorDeps {
  door?: UpdateDoor;
}

/** The direct methods the daemon answers (docs/update-workflow.md, "Method answers"). */
export function methodHandlers(options: MethodDeps) {
  const deps = { ...options, door: options.door ?? new UpdateDoor(options) };
  return {
    firmwareUpdate: (payload: unknown) => firmwareUpdate(deps, payload),
    firmwareUpdateCancel: () => firmwareUpdateCancel(deps),
  };
}

async function firmwareUpdate(deps: MethodDeps & { door: UpdateDoor }, payload: unknown): Promise<MethodAnswer> {
  let request;
  try {
    request = parseFirmwareUpdateRequest(payload);
  } catch (err) {
    if (err instanceof PayloadError) {
      deps.logger.warn({ reason: err.message }, 'firmwareUpdate refused: bad payload');
      return { status: 400, payload: { message: err.message } };
    }
    throw err;
  }
  const door = deps.door;
  return door.exclusive(async () => {
    const current = deps.state.update;
    if (current && !isTerminal(current.phase)) {
      if (current.fwPackageUri === request.fwPackageUri) {
        return { status: 200, payload: { updateId: current.updateId, message: `this update is already in progress (${reportedStatus(current.phase)})` } };
      }
      return {
        status: 409,
        payload: {
          message: `another update is in progress (${redactUri(current.fwPackageUri)}, ${reportedStatus(current.phase)}); cancel it with firmwareUpdateCancel or wait for it to end`,
          updateId: current.updateId,
          status: reportedStatus(current.phase),
        },
      };
    }
    const begun = await door.begin(request);
    if (!begun.ok) return { status: 500, payload: { message: begun.message } };
    const { update } = begun;
    return { status: 200, payload: { updateId: update.updateId, message: `accepted: ${redactUri(update.fwPackageUri)} will be written to slot ${update.targetSlot}` } };
  });
}

async function firmwareUpdateCancel(deps: MethodDeps): Promise<MethodAnswer> {
  const current = deps.state.update;
  if (!current || isTerminal(current.phase)) return { status: 200, payload: { message: 'nothing to cancel' } };
  deps.logger.info({ updateId: current.updateId }, 'update cancel requested');
  if (!(await deps.runner.cancel())) {
    return {
      status: 409,
      payload: { message: `too late to cancel: applying has started (${current.phase})`, updateId: current.updateId, status: reportedStatus(current.phase) },
    };
  }
  return { status: 200, payload: { message: 'cancelled', updateId: current.updateId } };
}
