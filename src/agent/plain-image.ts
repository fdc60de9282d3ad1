import { createHash } from 'node:crypto';
import type { BundleSummary, UpdateRecord } from './device-state.js';
import type { SlotWriter, SlotStorage } from './ports.js';
import { UpdateFailure } from './workflow/update-errors.js';

/** The partition a plain image goes to: a plain image is one partition's whole content. */
export const PLAIN_IMAGE_PARTITION = 'rootfs';

export interface PlainImageDeps {
  storage: SlotStorage;
  targetPartitions: Record<string, string>;
  /** The running image's security version: a plain image carries none, so it keeps the device's. */
  securityVersion: number;
  checkpoint: (update: UpdateRecord) => Promise<void>;
  progress: (update: UpdateRecord) => void;
  signal: AbortSignal;
}

/**
 * Writes an unsigned plain image, which a device accepts only when its config allows plain images and
 * the caller pinned the file's sha256, and only with a Content-Length (the size is checked against the
 * partition before a byte is written). Its bytes cannot be verified before they are written: the
 * sha256 is checked at the end and the slot is never booted unless it holds, then read back again.
 */
export async function writePlainImage(
  update: UpdateRecord,
  body: AsyncIterable<Uint8Array>,
  totalSize: number | null,
  deps: PlainImageDeps,
): Promise<void> {
  const pin = update.pinnedSha256;
  if (!pin) throw new UpdateFailure('notABundle', 'the file is not a piota bundle; a plain image needs the sha256 of the file in the request');
  if (totalSize === null) throw new UpdateFailure('noContentLength', 'the server did not say how large the plain image is (Content-Length), so it cannot be size-checked before writing');
  const path = deps.targetPartitions[PLAIN_IMAGE_PARTITION];
  if (!path) throw new UpdateFailure('incompatible', `a plain image goes to the '${PLAIN_IMAGE_PARTITION}' partition, which this device's slots do not have`);
  const size = await deps.storage.partitionSize(path);
  if (totalSize > size) throw new UpdateFailure('tooLarge', `the plain image has ${totalSize} bytes, but ${path} holds only ${size}`);

  const summary: BundleSummary = {
    version: update.expectedVersion ?? `sha256:${pin.slice(0, 12)}`,
    securityVersion: deps.securityVersion,
    headerLength: 0,
    totalBytes: totalSize,
    chunkCount: 0,
    payloads: [{ name: PLAIN_IMAGE_PARTITION, imageSize: totalSize, imageSha256: pin }],
  };
  update.bundle = summary;
  update.bytesDownloaded = 0;
  await deps.checkpoint(update);

  const hash = createHash('sha256');
  let writer: SlotWriter | undefined;
  try {
    writer = await deps.storage.openForWrite(path);
    let offset = 0;
    for await (const piece of body) {
      if (deps.signal.aborted) throw deps.signal.reason;
      const data = Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
      if (offset + data.length > totalSize) throw new UpdateFailure('malformed', `the server sent more than the ${totalSize} bytes it announced`);
      hash.update(data);
      await writer.write(offset, data);
      offset += data.length;
      update.bytesDownloaded = offset;
      deps.progress(update);
    }
    if (offset !== totalSize) throw new UpdateFailure('truncated', `the plain image ended after ${offset} of ${totalSize} bytes`);
    await writer.sync();
  } finally {
    await writer?.close().catch(() => undefined);
  }
  const actual = hash.digest('hex');
  if (actual !== pin) throw new UpdateFailure('sha256Mismatch', `the file at the URI has sha256 ${actual}, but the request pinned ${pin}`);
  await deps.checkpoint(update);
}
