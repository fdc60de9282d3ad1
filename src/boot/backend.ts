/** The two A/B slots. */
export type Slot = 'A' | 'B';
export const SLOTS: readonly Slot[] = ['A', 'B'];

/** The slot the daemon may write: never the one it booted from. */
export function inactiveSlot(booted: Slot): Slot {
  return booted === 'A' ? 'B' : 'A';
}

/** A boot configuration or boot state that cannot be used: names the file or command and what is wrong. */
export class BootError extends Error {
  override name = 'BootError';
  constructor(
    readonly code: 'badAutoboot' | 'badDeviceTree' | 'unknownPartition' | 'commandFailed' | 'refused' | 'io',
    message: string,
  ) {
    super(message);
  }
}

/**
 * What the daemon asks of a bootloader (RAUC's questions): which slot booted, is this boot a trial,
 * which slot boots by default, boot slot X once, make slot X the default, reboot.
 */
export interface BootBackend {
  readonly name: string;
  /** The slot this boot came from. */
  bootedSlot(): Promise<Slot>;
  /** true when this boot is a one-shot trial (a reset would fall back to the committed slot). */
  isTrialBoot(): Promise<boolean>;
  /** The slot a plain reboot boots. */
  committedSlot(): Promise<Slot>;
  /** Arranges one trial boot of `slot` and reboots into it; resolves once the reboot was accepted. */
  startTrial(slot: Slot): Promise<void>;
  /**
   * Points the one-shot trial boot back at the committed slot (a no-op when it already is), so a stray
   * tryboot reboot never boots a slot that is being rewritten or that failed its trial.
   */
  clearTrial(): Promise<void>;
  /** Makes `slot` the one every later boot uses; durable when it resolves. */
  commit(slot: Slot): Promise<void>;
  /** A plain reboot, which boots the committed slot. */
  reboot(): Promise<void>;
}
