import { readFile } from 'node:fs/promises';
import type { DaemonConfig, SlotName } from './config.js';
import type { DeviceState } from './device-state.js';

/**
 * The version running now: the booted slot's record (written when piota installed it); before piota
 * has installed anything there, the first line of the config's versionFile, else initialVersion.
 */
export async function runningVersion(config: DaemonConfig, state: DeviceState, booted: SlotName): Promise<string> {
  const record = state.slots[booted];
  if (record) return record.version;
  if (config.versionFile) {
    try {
      const first = (await readFile(config.versionFile, 'utf8')).split('\n')[0].trim();
      if (first) return first;
    } catch {
      // no version file in this image: fall through to the configured initial version
    }
  }
  return config.initialVersion;
}

/** The security version of the running image: a bundle below it is a downgrade. */
export function runningSecurityVersion(state: DeviceState, booted: SlotName): number {
  return state.slots[booted]?.securityVersion ?? 0;
}
