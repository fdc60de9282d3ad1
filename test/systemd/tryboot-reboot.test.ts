import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bootContainer, compileForGuest, ensureRoot, rigSkipReason, GUEST_OUT, type BootResult } from './rig.js';

// piota's reboot code, as built, run by Debian trixie's Node.js under trixie's systemd 257 (the systemd
// of Raspberry Pi OS trixie), booted in systemd-nspawn: the tryboot reboot is accepted and the
// system reboots with the firmware's argument `0 tryboot`, from the legacy argv that old configs
// keep as from the new default.
const LEGACY = ['systemctl', 'reboot', '0 tryboot'];
const CURRENT = ['systemctl', 'reboot', '--reboot-argument=0 tryboot'];

const skip = rigSkipReason();
if (skip) console.warn(`systemd 257 tryboot reboot tests skipped: ${skip}`);

// Records the outcome before the shutdown can stop it: SIGTERM (sent when the reboot stops this
// unit) is ignored, so systemd waits for the file to be written and the process to exit.
const script = `
import { readFileSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { runRebootCommand } from '/opt/piota/dist/boot/reboot-command.js';
process.on('SIGTERM', () => {});
const argv = JSON.parse(readFileSync('/rig/in/argv.json', 'utf8'));
const logs = [];
let result;
try {
  await runRebootCommand(argv, { log: (msg, fields) => logs.push({ msg, fields }) });
  result = { accepted: true, logs };
} catch (err) {
  result = { accepted: false, error: err.message, logs };
}
writeFileSync('${GUEST_OUT}/result.json', JSON.stringify(result));
if (!result.accepted) execFileSync('systemctl', ['poweroff']); // end the boot now, not at the timeout
`;

const unit = (checkLegacyDirectly: boolean) => `[Unit]
Description=piota tryboot reboot under test
After=multi-user.target
RequiresMountsFor=${GUEST_OUT} /opt/piota /rig/in

[Service]
Type=exec
ExecStartPre=/bin/sh -c 'systemctl --version | head -n1 > ${GUEST_OUT}/systemd-version'
${checkLegacyDirectly ? `ExecStartPre=/bin/sh -c 'systemctl reboot "0 tryboot" > ${GUEST_OUT}/legacy-direct 2>&1; echo "exit $$?" >> ${GUEST_OUT}/legacy-direct'` : ''}
ExecStart=/usr/bin/node /rig/in/reboot.mjs
TimeoutStopSec=20
`;

/**
 * The note that systemctl was stopped by the shutdown it started: whether the stop reaches
 * systemctl before it exits is a race (src/boot/reboot-command.ts takes it as accepted).
 */
const isRaceNote = (l: { msg: string }) => l.msg.startsWith('the reboot command was ended by the shutdown it started');
/** The warnings, less the race note. */
const warnings = (run: Run) => run.result.logs.filter((l) => !isRaceNote(l));

interface Run {
  boot: BootResult;
  result: { accepted: boolean; error?: string; logs: { msg: string; fields: unknown }[] };
  file(name: string): Promise<string>;
}

async function rebootInContainer(root: string, code: string, argv: string[], checkLegacyDirectly = false): Promise<Run> {
  const input = await mkdtemp(join(tmpdir(), 'piota-rig-in-'));
  try {
    await writeFile(join(input, 'reboot.mjs'), script);
    await writeFile(join(input, 'argv.json'), JSON.stringify(argv));
    const boot = await bootContainer(root, {
      units: { 'piota-reboot-test.service': unit(checkLegacyDirectly) },
      binds: [
        { host: code, guest: '/opt/piota' },
        { host: input, guest: '/rig/in' },
      ],
      timeoutMs: 60_000,
    });
    const file = (name: string) => readFile(join(boot.out, name), 'utf8');
    const result = JSON.parse(await file('result.json').catch(() => 'null'));
    if (!result) throw new Error(`the test unit wrote no result (nspawn exit ${boot.exitCode}, timed out: ${boot.timedOut}):\n${boot.console.slice(-4000)}`);
    const raced = (result.logs as { msg: string }[]).some(isRaceNote);
    console.log(`booted and rebooted trixie in ${boot.ms} ms${raced ? '; systemctl was stopped by the shutdown it started (taken as accepted)' : ''}`);
    return { boot, result, file };
  } finally {
    await rm(input, { recursive: true, force: true });
  }
}

describe.skipIf(skip !== undefined)('the tryboot reboot under systemd 257 (Debian trixie in systemd-nspawn)', () => {
  let root: string;
  let code: string;

  beforeAll(async () => {
    code = await compileForGuest(['src/boot/reboot-command.ts']);
    const r = await ensureRoot();
    root = r.root;
    console.log(r.built ? `built the trixie root in ${r.ms} ms: ${root}` : `reusing the cached trixie root ${root}`);
  }, 600_000);
  afterAll(async () => {
    if (code) await rm(code, { recursive: true, force: true });
  });

  it('legacy argv: systemctl 257 itself refuses it, piota runs the --reboot-argument form, says so, and the system reboots with 0 tryboot', async () => {
    const run = await rebootInContainer(root, code, LEGACY, true);
    try {
      expect(await run.file('systemd-version')).toMatch(/^systemd 257 /);
      // The bug, documented: the positional form fails and does not reboot.
      expect(await run.file('legacy-direct')).toMatch(/Too many arguments\.\nexit 1\n$/);
      expect({ ...run.result, logs: warnings(run) }).toEqual({
        accepted: true,
        logs: [{ msg: expect.stringContaining('--reboot-argument= form instead'), fields: { configured: LEGACY, running: CURRENT } }],
      });
      expect(run.boot.rebooted).toBe(true);
      expect(run.boot.rebootParam).toBe('0 tryboot');
    } finally {
      await run.boot.cleanup();
    }
  }, 90_000);

  it('new default argv: accepted as configured, no warning, and the system reboots with 0 tryboot', async () => {
    const run = await rebootInContainer(root, code, CURRENT);
    try {
      expect({ ...run.result, logs: warnings(run) }).toEqual({ accepted: true, logs: [] });
      expect(run.boot.rebooted).toBe(true);
      expect(run.boot.rebootParam).toBe('0 tryboot');
    } finally {
      await run.boot.cleanup();
    }
  }, 90_000);
});
