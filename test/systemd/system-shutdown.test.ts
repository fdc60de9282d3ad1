import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bootContainer, compileForGuest, ensureRoot, rigSkipReason, GUEST_OUT } from './rig.js';

// piota's "is the system shutting down?" (src/os/system-shutdown.ts), as built, asked of trixie's
// systemd 257 in systemd-nspawn: false while the system runs, true from the moment `systemctl
// reboot` has queued the reboot until the service is stopped. The daemon waits on a late reboot
// while it is true rather than failing it (docs/update-workflow.md).
const skip = rigSkipReason();
if (skip) console.warn(`systemd 257 shutdown-state test skipped: ${skip}`);

// SIGTERM (the shutdown reaching the unit) is ignored for a moment so the unit can keep asking:
// the answers while the reboot is queued and while units stop are what the daemon would get. (The
// first question's systemctl is often killed by that same SIGTERM, sent to the whole cgroup: that
// answer is yes too.)
const script = `
import { writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { systemShuttingDown } from '/opt/piota/dist/os/system-shutdown.js';
let terminated = false;
process.on('SIGTERM', () => { terminated = true; });
const before = await systemShuttingDown();
execFileSync('systemctl', ['reboot']);
const after = [];
for (let i = 0; i < 40; i++) {
  after.push({ stopping: await systemShuttingDown(), terminated });
  writeFileSync('${GUEST_OUT}/result.json', JSON.stringify({ before, after }));
  if (terminated && after.length >= 3) break;
  await new Promise((r) => setTimeout(r, 100));
}
`;

const unit = `[Unit]
Description=piota shutdown-state check
After=multi-user.target
RequiresMountsFor=${GUEST_OUT} /opt/piota /rig/in

[Service]
Type=exec
ExecStart=/usr/bin/node /rig/in/check.mjs
TimeoutStopSec=20
`;

// Stopped before the check (it is ordered after it), slowly: the shutdown is under way a while
// before it reaches the check, as a slow shutdown is before it reaches the daemon.
const slowStop = `[Unit]
Description=piota rig: a unit slow to stop
After=piota-shutdown-check.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true
ExecStop=/bin/sleep 2
`;

describe.skipIf(skip !== undefined)('is the system shutting down? under systemd 257 (Debian trixie in systemd-nspawn)', () => {
  let root: string;
  let code: string;
  let input: string;

  beforeAll(async () => {
    code = await compileForGuest(['src/os/system-shutdown.ts']);
    root = (await ensureRoot()).root;
    input = await mkdtemp(join(tmpdir(), 'piota-rig-in-'));
    await writeFile(join(input, 'check.mjs'), script);
  }, 600_000);
  afterAll(async () => {
    for (const dir of [code, input]) if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('false while the system runs; true once a reboot is queued, before the shutdown reaches the unit and after; then the system reboots', async () => {
    const boot = await bootContainer(root, {
      units: { 'piota-shutdown-check.service': unit, 'piota-slow-stop.service': slowStop },
      binds: [
        { host: code, guest: '/opt/piota' },
        { host: input, guest: '/rig/in' },
      ],
      timeoutMs: 60_000,
    });
    try {
      const text = await readFile(join(boot.out, 'result.json'), 'utf8').catch(() => '');
      if (!text) throw new Error(`the check wrote nothing (nspawn exit ${boot.exitCode}, timed out: ${boot.timedOut}):\n${boot.console.slice(-4000)}`);
      const result = JSON.parse(text) as { before: boolean; after: { stopping: boolean; terminated: boolean }[] };
      console.log(`systemShuttingDown(): before the reboot ${result.before}; after it ${result.after.filter((a) => a.stopping).length} of ${result.after.length} answers yes, ${result.after.filter((a) => !a.terminated).length} before the SIGTERM`);
      expect(result.before).toBe(false);
      // Every answer after the reboot was queued, before and after the unit's own stop began.
      expect(result.after.length).toBeGreaterThanOrEqual(3);
      expect(result.after.every((a) => a.stopping)).toBe(true);
      // Yes before the shutdown reached the unit (the daemon's case), and after.
      expect(result.after.some((a) => !a.terminated)).toBe(true);
      expect(result.after.some((a) => a.terminated)).toBe(true);
      expect(boot.rebooted).toBe(true);
    } finally {
      await boot.cleanup();
    }
  }, 120_000);
});
