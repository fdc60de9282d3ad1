import { describe, it, expect, afterAll } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addDevice, startHub, type RunningHub } from '../../src/hub-emulator/index.js';
import { piotaBin } from './world.js';

// `piota trigger --connection-string` is what a user runs against a real IoT Hub (port 443, public
// CA). Here the emulator listens on 443 and --ca stands in for the public CA: the same code path.
async function port443Free(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'not root (port 443)';
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', (e: NodeJS.ErrnoException) => resolve(`port 443 is taken (${e.code})`));
    s.listen(443, '127.0.0.1', () => s.close(() => resolve(undefined)));
  });
}
const unavailable = await port443Free();
if (unavailable) console.log(`trigger --connection-string test skipped: ${unavailable}`);

describe.skipIf(unavailable !== undefined)('piota trigger --connection-string (a hub on port 443)', () => {
  let hub: RunningHub | undefined;
  let dir: string | undefined;
  afterAll(async () => {
    await hub?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('reaches the hub with a service connection string and names an offline device (exit 5)', async () => {
    dir = await mkdtemp(join(tmpdir(), 'piota-hub443-'));
    hub = await startHub({ dir, mqttPort: 0, httpsPort: 443 });
    await addDevice(dir, 'sleeping-pi');
    const run = (env: NodeJS.ProcessEnv, ...args: string[]) =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn(process.execPath, [piotaBin, 'trigger', '--device', 'sleeping-pi', '--uri', 'https://localhost/fw', ...args], {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...process.env, ...env },
        });
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (out += d.toString()));
        child.on('exit', (code) => resolve({ code, out }));
      });
    const viaFlag = await run({}, '--connection-string', hub.info.serviceConnectionString, '--ca', hub.info.caFile);
    expect(viaFlag.code, viaFlag.out).toBe(5);
    expect(viaFlag.out).toContain("device 'sleeping-pi' is not connected");
    const viaEnv = await run({ IOTHUB_CONNECTION_STRING: hub.info.serviceConnectionString, NODE_EXTRA_CA_CERTS: hub.info.caFile });
    expect(viaEnv.code, viaEnv.out).toBe(5);
    const wrongKey = hub.info.serviceConnectionString.replace(/SharedAccessKey=[^;]+/, `SharedAccessKey=${Buffer.alloc(32, 7).toString('base64')}`);
    const refused = await run({}, '--connection-string', wrongKey, '--ca', hub.info.caFile);
    expect(refused.code).toBe(2);
    expect(refused.out).toContain('refused the service credentials');
  });
});
