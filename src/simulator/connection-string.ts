import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileDurably } from '../os/durable-file.js';

/** Registers a device with a hub and returns its connection string (the hub emulator's addDevice). */
export type RegisterDevice = (hubDir: string, deviceId: string) => Promise<string>;

/**
 * Makes sure `<stateDir>/connection-string` (0600) holds a connection string for `deviceId`.
 * A file already naming that device is kept (the same Pi powered on again); otherwise the device is
 * registered with the hub and the file written.
 */
export async function ensureConnectionString(stateDir: string, hubDir: string, deviceId: string, register: RegisterDevice): Promise<'kept' | 'registered'> {
  const path = join(stateDir, 'connection-string');
  const existing = await readFile(path, 'utf8').catch(() => '');
  if (existing.split(';').some((part) => part.trim() === `DeviceId=${deviceId}`)) return 'kept';
  const connectionString = (await register(hubDir, deviceId)).trim();
  if (!/(^|;)HostName=[^;]+/.test(connectionString) || !connectionString.includes(`DeviceId=${deviceId}`)) {
    throw new Error(`the hub returned no usable connection string for device '${deviceId}'`);
  }
  await writeFileDurably(path, connectionString + '\n', { mode: 0o600, mkdirs: true });
  return 'registered';
}
