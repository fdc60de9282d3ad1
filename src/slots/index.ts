export { SlotError, type SlotErrorCode } from './slot-error.js';
export { describePartition, partitionSize, type SlotPartition } from './partition.js';
export { mountPointOf } from './mounts.js';
export { openPartitionForWrite, ensureFits, type PartitionWriter, type OpenForWriteOptions } from './writer.js';
export { hashPartition, readBackHash, type ReadBack } from './readback.js';
