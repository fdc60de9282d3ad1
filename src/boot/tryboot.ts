import { BootError, SLOTS, type BootBackend, type Slot } from './backend.js';
import { readAutoboot, writeAutoboot } from './autoboot-file.js';
import { readBootloaderValue } from './device-tree.js';
import { runRebootCommand, type RebootLog } from './reboot-command.js';

/** The `boot` section of the daemon config for the tryboot backend. */
export interface TrybootOptions {
  autobootFile: string;
  /** The boot partition number of each slot, as autoboot.txt and the device tree count them. */
  bootPartitions: Record<Slot, number>;
  /** Where the firmware publishes `tryboot` and `partition` (/sys/firmware/devicetree/base/chosen/bootloader, which /proc/device-tree links to). */
  deviceTreeDir: string;
  rebootCommand: readonly string[];
  /** A reboot that boots the `[tryboot]` partition once: systemctl reboot "--reboot-argument=0 tryboot". */
  trybootCommand: readonly string[];
}

/**
 * Raspberry Pi 4/5 tryboot: autoboot.txt names the partition every boot uses (`[all]`) and the one
 * a `0 tryboot` reboot uses once (`[tryboot]`); the firmware tells the booted partition and whether
 * this boot was a trial in the device tree.
 *
 * Outside a trial, `[tryboot]` points at the committed partition too, so a stray tryboot reboot
 * (or a power cut in the middle of a trial set-up) boots the good slot and never a half-written one.
 */
export class TrybootBackend implements BootBackend {
  readonly name = 'tryboot';

  /** `log` hears which reboot command actually ran when the configured one is rewritten (reboot-command.ts). */
  constructor(
    private readonly options: TrybootOptions,
    private readonly log?: RebootLog,
  ) {
    const { A, B } = options.bootPartitions;
    if (A === B) throw new BootError('badAutoboot', `boot.bootPartitions: slots A and B both use partition ${A}`);
  }

  async bootedPartition(): Promise<number> {
    return readBootloaderValue(this.options.deviceTreeDir, 'partition');
  }

  async bootedSlot(): Promise<Slot> {
    const partition = await this.bootedPartition();
    return this.slotOf(partition, `${this.options.deviceTreeDir}/partition`);
  }

  async isTrialBoot(): Promise<boolean> {
    return (await readBootloaderValue(this.options.deviceTreeDir, 'tryboot')) !== 0;
  }

  async committedSlot(): Promise<Slot> {
    const config = await readAutoboot(this.options.autobootFile);
    return this.slotOf(config.bootPartition, `${this.options.autobootFile} [all] boot_partition`);
  }

  /** Points `[tryboot]` at `slot` without rebooting (startTrial = this + rebootIntoTrial). */
  async prepareTrial(slot: Slot): Promise<void> {
    const config = await readAutoboot(this.options.autobootFile);
    const committed = this.slotOf(config.bootPartition, `${this.options.autobootFile} [all] boot_partition`);
    if (committed === slot) throw new BootError('refused', `refusing a trial of slot ${slot}: it is already the committed slot`);
    await writeAutoboot(this.options.autobootFile, { bootPartition: config.bootPartition, trybootPartition: this.partitionOf(slot) });
  }

  async rebootIntoTrial(): Promise<void> {
    await runRebootCommand(this.options.trybootCommand, { log: this.log });
  }

  async startTrial(slot: Slot): Promise<void> {
    await this.prepareTrial(slot);
    await this.rebootIntoTrial();
  }

  async commit(slot: Slot): Promise<void> {
    const partition = this.partitionOf(slot);
    await writeAutoboot(this.options.autobootFile, { bootPartition: partition, trybootPartition: partition });
  }

  async clearTrial(): Promise<void> {
    const config = await readAutoboot(this.options.autobootFile);
    if (config.trybootPartition === config.bootPartition) return;
    await writeAutoboot(this.options.autobootFile, { bootPartition: config.bootPartition, trybootPartition: config.bootPartition });
  }

  async reboot(): Promise<void> {
    await runRebootCommand(this.options.rebootCommand, { log: this.log });
  }

  private partitionOf(slot: Slot): number {
    return this.options.bootPartitions[slot];
  }

  private slotOf(partition: number, where: string): Slot {
    const slot = SLOTS.find((s) => this.options.bootPartitions[s] === partition);
    if (!slot) {
      const { A, B } = this.options.bootPartitions;
      throw new BootError('unknownPartition', `${where}: partition ${partition} is neither slot A (${A}) nor slot B (${B})`);
    }
    return slot;
  }
}
