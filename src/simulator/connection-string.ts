import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileDurably } from '../os/durable-file.js';

/** Registers a device with a hub and returns its connection string (the hub emulator's addDevice). */
export type RegisterDevice = (hubDir: string, deviceId: string) => Promise<string>;

/**
 * Makes sure `<stateDir>/connection-string` (0600) holds the device's connection string. The device
 * is registered every time (registering an existing device returns its connection string, with the
 * hub's current host and port), and the file is rewritten only when that changed.
 */
export async function ensureConnectionString(stateDir: string, hubDir: string, deviceId: string, register: RegisterDevice): Promise<'kept' | 'written'> {
  const path = join(stateDir, 'connection-string');
  const connectionString = (await register(hubDir, deviceId)).trim();
  if (!/(^|;)HostName=[^;]+/.test(connectionString) || !connectionString.split(';').includes(`DeviceId=${deviceId}`)) {
    throw new Error(`the hub returned no usable connection string for device '${deviceId}'`);
  }
  const existing = await readFile(path, 'utf8').catch(() => '');
  if (existing.trim() === connectionString) return 'kept';
  await writeFileDurably(path, connectionString + '\n', { mode: 0o600, mkdirs: true });
  return 'written';
}
