import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Slot } from '../boot/backend.js';

/** Why the board booted: what the firmware was told, or what happened to it. */
export type BootCause = 'powerOn' | 'powerCut' | 'reboot' | 'tryboot' | 'watchdog';

/** One line of DIR/boots.jsonl: what the firmware booted, and the bytes it booted. */
export interface BootRecord {
  boot: number;
  at: string;
  cause: BootCause;
  slot: Slot;
  partition: number;
  trial: boolean;
  /** sha256 of each whole partition file of the booted slot, read before the daemon starts. */
  sha256: { boot: string; rootfs: string };
}

/**
 * Test hook: with PIOTA_SIM_BOOT_RECORD set (to anything but empty), the simulator appends a
 * BootRecord to DIR/boots.jsonl at every boot. Off by default: hashing a 64M slot at each boot
 * costs time a demo does not need. Tests use it to check that the firmware never booted bytes that
 * differ from a verified image.
 */
export function bootRecordFile(dir: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env.PIOTA_SIM_BOOT_RECORD ? join(dir, 'boots.jsonl') : undefined;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export async function appendBootRecord(
  file: string,
  entry: Omit<BootRecord, 'sha256' | 'at'>,
  partitions: { boot: string; rootfs: string },
): Promise<void> {
  const sha256 = { boot: await sha256File(partitions.boot), rootfs: await sha256File(partitions.rootfs) };
  const record: BootRecord = { boot: entry.boot, at: new Date().toISOString(), cause: entry.cause, slot: entry.slot, partition: entry.partition, trial: entry.trial, sha256 };
  await appendFile(file, JSON.stringify(record) + '\n');
}
