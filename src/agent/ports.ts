/** What the workflow needs from the boot firmware: src/boot/'s small backend interface. */
export type { BootBackend as BootControl } from '../boot/backend.js';

/** Writing one slot partition (a file or block device). */
export interface PartitionWriter {
  readonly size: number;
  write(offset: number, data: Buffer): Promise<void>;
  /** Everything written so far is on the medium when this resolves. */
  sync(): Promise<void>;
  close(): Promise<void>;
}

/** Opening, sizing and reading back slot partitions (implemented by src/slots/). */
export interface SlotStorage {
  partitionSize(path: string): Promise<number>;
  /** Refuses a mounted device. */
  openForWrite(path: string): Promise<PartitionWriter>;
  /** sha256 (hex) of the first `length` bytes, read from the medium, not the page cache; ends early when `signal` aborts. */
  hashFromMedium(path: string, length: number, signal?: AbortSignal): Promise<string>;
}
