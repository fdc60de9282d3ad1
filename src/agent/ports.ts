import type { PartitionWriter } from '../slots/writer.js';

/** What the workflow needs from the boot firmware: src/boot/'s small backend interface. */
export type { BootBackend } from '../boot/backend.js';

/** Writing one slot partition: what the workflow uses of src/slots/'s writer. */
export type SlotWriter = Pick<PartitionWriter, 'size' | 'write' | 'sync' | 'close'>;

/** Opening, sizing and reading back slot partitions (implemented by src/slots/). */
export interface SlotStorage {
  partitionSize(path: string): Promise<number>;
  /** Refuses a mounted device. */
  openForWrite(path: string): Promise<SlotWriter>;
  /** sha256 (hex) of the first `length` bytes, read from the medium, not the page cache; ends early when `signal` aborts. */
  hashFromMedium(path: string, length: number, signal?: AbortSignal): Promise<string>;
}
