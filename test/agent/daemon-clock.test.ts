import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { addDevice, type RunningHub } from '../../src/hub-emulator/index.js';
import { startDaemon } from '../../src/agent/daemon.js';
import type { Clock } from '../../src/agent/clock.js';
import { sleep } from '../../src/agent/clock.js';
import { validateConfig } from '../../src/agent/config.js';
import { generateKeyPair } from '../../src/bundle/keys.js';
import { serviceClient, serviceRegistry } from '../../src/service/hub-connection.js';
import { removeDir, startTestHub, tempDir } from '../hub-emulator/helpers.js';
import { waitFor } from '../helpers/wait-for.js';
import { FakeBoot, silentLogger } from './fakes/ports.js';

// The real daemon, in this process, against the emulator over TLS, with its wall clock set wrong
// through the clock seam (the test machine's clock cannot be set): whatever the clock says, the daemon
// reaches the hub, says in the twin what it decided, and never persists a time ahead of the evidence.
const DAY = 86_400_000;
let dir: string;
let hub: RunningHub;
let pub: string;

beforeAll(async () => {
  dir = await tempDir();
  hub = await startTestHub(join(dir, 'hub'));
  pub = join(dir, 'key.pub');
  await writeFile(pub, generateKeyPair().publicKeyPem);
}, 30_000);
afterAll(async () => {
  await hub?.close();
  await removeDir(dir);
});

/** A wall clock `offsetMs` away from the real one; monotonic time and sleeps are real. */
function skewedClock(offsetMs: number): Clock {
  return { now: () => Date.now() + offsetMs, monotonic: () => performance.now(), sleep, synchronized: () => false };
}

async function runDevice(id: string, clock: Clock, persistedFloor: number | null) {
  const base = join(dir, id);
  const stateDir = join(base, 'state');
  await mkdir(stateDir, { recursive: true });
  await writeFile(join(stateDir, 'connection-string'), await addDevice(join(dir, 'hub'), id));
  if (persistedFloor !== null) {
    await writeFile(join(stateDir, 'state.json'), JSON.stringify({ schema: 2, data: { slots: { A: null, B: null }, update: null, newestTimestamp: persistedFloor } }));
  }
  for (const f of ['a', 'b']) await writeFile(join(base, f), Buffer.alloc(4096));
  const config = validateConfig({
    model: 'raspberrypi4-64',
    stateDir,
    runtimeDir: join(base, 'run'),
    trustedKeys: [pub],
    hubCaFile: hub.info.caFile,
    slots: { A: { rootfs: join(base, 'a') }, B: { rootfs: join(base, 'b') } },
    boot: { backend: 'tryboot', autobootFile: join(base, 'autoboot.txt'), bootPartitions: { A: 2, B: 3 } },
    clock: { maxWaitSeconds: 1 },
    download: { retry: { attempts: 1 } },
  });
  const daemon = await startDaemon(config, silentLogger, '0.2.0-test', { clock, boot: new FakeBoot() });
  try {
    const reported = await waitFor(`${id} to report its clock decision`, async () => {
      const { responseBody } = await serviceRegistry(hub.info).getTwin(id);
      const r = responseBody.properties.reported as Record<string, any>;
      return r.piota?.clock ? r : undefined;
    }, 20_000);
    // Make the daemon save its state once (an update that fails at once: nothing listens there).
    // IoT Hub answers 404 to a method for a device whose subscription it does not have yet; callers retry.
    // The device answers once the update is on disk (fsync): on a machine busy writing images that
    // took more than 10 s once, so the call allows 30.
    const { result } = await waitFor('the device to take the method', () =>
      serviceClient(hub.info).invokeDeviceMethod(id, { methodName: 'firmwareUpdate', payload: { fwPackageUri: 'https://127.0.0.1:1/fw.piota' }, responseTimeoutInSeconds: 30 }), 45_000);
    expect((result as { status: number }).status).toBe(200);
    await waitFor('the update to end', async () => JSON.parse(await readFile(join(stateDir, 'state.json'), 'utf8')).data.update?.phase === 'downloadFailed', 20_000);
    const persisted = JSON.parse(await readFile(join(stateDir, 'state.json'), 'utf8')).data.newestTimestamp as number;
    return { clock: reported.piota.clock, persisted };
  } finally {
    await daemon.stop();
  }
}

describe('the daemon with a wrong wall clock', { timeout: 120_000 }, () => {
  it('a clock 15 years ahead: connects, and the persisted floor stays near the evidence, not in the future', async () => {
    const realFloor = Date.now() - DAY;
    const r = await runDevice('clock-ahead', skewedClock(15 * 365 * DAY), realFloor);
    expect(r.clock.decision).toBe('plausible');
    expect(r.persisted).toBeGreaterThanOrEqual(realFloor);
    expect(r.persisted).toBeLessThan(realFloor + 60_000);
  });

  it('a clock a year behind the floor: waits its bound (1 s), then connects anyway and says so', async () => {
    const r = await runDevice('clock-behind', skewedClock(-365 * DAY), Date.now());
    expect(r.clock.decision).toBe('gaveUp');
    // Its bound (1 s), not the default 300 s: a loaded machine may add a few seconds of scheduling.
    expect(r.clock.waitedSeconds).toBeGreaterThanOrEqual(1);
    expect(r.clock.waitedSeconds).toBeLessThan(30);
  });

  it('1970 at boot on a device that has a floor: gives up waiting after its bound and reaches the hub', async () => {
    const floor = Date.now() - DAY;
    const r = await runDevice('clock-1970', skewedClock(-Date.now()), floor);
    expect(r.clock).toMatchObject({ decision: 'gaveUp', observed: expect.stringMatching(/^1970-/) });
    // 1970 is never persisted: the floor stays where the evidence put it.
    expect(r.persisted).toBe(floor);
  });

  it('1970 at boot on a new device (no floor yet): plausible, and no floor is invented', async () => {
    const r = await runDevice('clock-new', skewedClock(-Date.now()), null);
    expect(r.clock.decision).toBe('plausible');
    expect(r.persisted).toBeLessThan(DAY);
  });
});
