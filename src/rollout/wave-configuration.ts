import { desiredReleaseId, inRolloutCondition, quoteLiteral } from './evidence.js';
import type { ConfigurationSpec } from './hub-port.js';
import type { RolloutDefinition } from './definition.js';

/** The id of a wave's automatic device configuration (`--via configuration`), like its job's would be. */
export function waveConfigurationId(name: string, wave: number): string {
  return `piota-${name}-w${wave}`;
}

/** The desired release every device of the rollout is offered (`properties.desired.piota.firmware`). */
export function desiredRelease(d: RolloutDefinition): Record<string, unknown> {
  const release: Record<string, unknown> = { id: desiredReleaseId(d.name), fwPackageUri: d.release.fwPackageUri, version: d.release.version };
  if (d.release.sha256) release.sha256 = d.release.sha256;
  if (d.release.applyNow) release.applyWindow = 'now';
  return release;
}

/**
 * One wave as an automatic device configuration: the wave's tagged devices get the desired release,
 * and the hub counts (for the portal, `az iot hub configuration show`, a glance) those reporting
 * this rollout's release done or failed. The counts only look at the last reported status; the
 * controller's evidence matches each status to the update the desired release started.
 */
export function waveConfiguration(d: RolloutDefinition, wave: number): ConfigurationSpec {
  const acted = `${inRolloutCondition(d.name, wave)} AND properties.reported.piota.firmware.desiredId = ${quoteLiteral(desiredReleaseId(d.name))}`;
  const withStatus = (status: string) => `SELECT deviceId FROM devices WHERE ${acted} AND properties.reported.iothubDM.firmwareUpdate.status = '${status}'`;
  return {
    id: waveConfigurationId(d.name, wave),
    targetCondition: inRolloutCondition(d.name, wave),
    // Above the default 0: a standing configuration that also writes piota.firmware loses to the rollout's wave.
    priority: 10,
    labels: { piotaRollout: d.name, piotaWave: String(wave) },
    desiredPatch: { piota: { firmware: desiredRelease(d) } },
    metrics: { applyComplete: withStatus('applyComplete'), applyFailed: withStatus('applyFailed') },
  };
}
