import type { AutobootConfig } from '../boot/autoboot.js';

export interface BootDecision {
  partition: number;
  trial: boolean;
}

/**
 * The Pi firmware's choice of boot partition: a reboot with `0 tryboot` boots the `[tryboot]`
 * partition once, with tryboot=1 in the device tree; every other boot (a plain reboot, a power cut,
 * a reset during a trial) boots `[all]` with tryboot=0. Without a `[tryboot]` section a tryboot
 * request boots `[all]` as a trial, as the firmware falls back to the common settings.
 */
export function chooseBoot(autoboot: AutobootConfig, trybootRequested: boolean): BootDecision {
  if (trybootRequested) return { partition: autoboot.trybootPartition ?? autoboot.bootPartition, trial: true };
  return { partition: autoboot.bootPartition, trial: false };
}
