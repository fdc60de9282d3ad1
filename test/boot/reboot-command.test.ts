import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runRebootCommand } from '../../src/boot/reboot-command.js';
import { currentRebootArgv, rejectsRebootArgumentOption } from '../../src/boot/systemctl-reboot-argv.js';
import { BootError } from '../../src/boot/backend.js';

// The real systemctl 257 is driven in test/systemd/tryboot-reboot.test.ts; here a `systemctl` script
// plays the argument parsing of each systemd generation, fast, to cover every branch.

describe('currentRebootArgv', () => {
  it.each([
    ['systemctl'],
    ['/usr/bin/systemctl'],
    ['/bin/systemctl'],
  ])('rewrites the legacy positional form spelled %s', (program) => {
    expect(currentRebootArgv([program, 'reboot', '0 tryboot'])).toEqual([program, 'reboot', '--reboot-argument=0 tryboot']);
  });

  it('keeps any other reboot argument, as the firmware string is not piota’s business', () => {
    expect(currentRebootArgv(['systemctl', 'reboot', 'recovery'])).toEqual(['systemctl', 'reboot', '--reboot-argument=recovery']);
  });

  it.each([
    [['systemctl', 'reboot', '--reboot-argument=0 tryboot'], 'already the current form'],
    [['systemctl', 'reboot'], 'no reboot argument'],
    [['systemctl', 'reboot', '-i'], 'an option, not an argument'],
    [['systemctl', 'reboot', ''], 'an empty argument'],
    [['reboot', '0 tryboot'], 'the compatibility reboot command, which still takes it positionally'],
    [['systemctl', 'poweroff', '0 tryboot'], 'not the reboot verb'],
    [['systemctl', 'reboot', '0 tryboot', '--no-wall'], 'options mixed in'],
    [['/usr/bin/mysystemctl', 'reboot', '0 tryboot'], 'another program'],
    [['sudo', 'systemctl', 'reboot', '0 tryboot'], 'a wrapper'],
  ])('leaves %j alone (%s)', (argv) => {
    expect(currentRebootArgv(argv)).toBeUndefined();
  });

  it('recognises glibc’s message for an unknown option', () => {
    expect(rejectsRebootArgumentOption("systemctl: unrecognized option '--reboot-argument=0 tryboot'")).toBe(true);
    expect(rejectsRebootArgumentOption('Too many arguments.')).toBe(false);
  });
});

describe('runRebootCommand', () => {
  let dir: string;
  let calls: string;
  let logs: { msg: string; fields: object }[];
  const log = (msg: string, fields: object) => void logs.push({ msg, fields });

  /** A `systemctl` that parses like systemd `generation` ('257' or '241') and records each argv. */
  async function systemctl(generation: '257' | '241', name = 'systemctl'): Promise<string> {
    const path = join(dir, name);
    const script = [
      `#!${process.execPath}`,
      `const args = process.argv.slice(2);`,
      `require('fs').appendFileSync(${JSON.stringify(calls)}, JSON.stringify(args) + '\\n');`,
      `const option = args.find((a) => a.startsWith('-'));`,
      `if (${generation === '241'} && option) { console.error("systemctl: unrecognized option '" + option + "'"); process.exit(1); }`,
      `if (${generation === '257'} && args.length > 1 && !args[1].startsWith('-')) { console.error('Too many arguments.'); process.exit(1); }`,
    ].join('\n');
    await writeFile(path, script);
    await chmod(path, 0o755);
    return path;
  }
  const recorded = async () => (await readFile(calls, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as string[]);

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'piota-reboot-'));
    calls = join(dir, 'calls');
    logs = [];
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('runs the legacy argv in the --reboot-argument form and warns with both', async () => {
    const program = await systemctl('257');
    await runRebootCommand([program, 'reboot', '0 tryboot'], { log });
    expect(await recorded()).toEqual([['reboot', '--reboot-argument=0 tryboot']]);
    expect(logs).toHaveLength(1);
    expect(logs[0].msg).toMatch(/Too many arguments/);
    expect(logs[0].fields).toEqual({ configured: [program, 'reboot', '0 tryboot'], running: [program, 'reboot', '--reboot-argument=0 tryboot'] });
  });

  it('runs the current form as configured, silently', async () => {
    const program = await systemctl('257');
    await runRebootCommand([program, 'reboot', '--reboot-argument=0 tryboot'], { log });
    expect(await recorded()).toEqual([['reboot', '--reboot-argument=0 tryboot']]);
    expect(logs).toEqual([]);
  });

  it('falls back to the configured form only when systemctl does not know --reboot-argument', async () => {
    const program = await systemctl('241');
    await runRebootCommand([program, 'reboot', '0 tryboot'], { log });
    expect(await recorded()).toEqual([['reboot', '--reboot-argument=0 tryboot'], ['reboot', '0 tryboot']]);
    expect(logs.map((l) => l.msg)).toEqual([expect.stringMatching(/running the --reboot-argument= form/), expect.stringMatching(/older than 246/)]);
  });

  it('reports the rewritten command when it fails for another reason, without a fallback', async () => {
    const program = join(dir, 'systemctl');
    await writeFile(program, `#!${process.execPath}\nrequire('fs').appendFileSync(${JSON.stringify(calls)}, JSON.stringify(process.argv.slice(2)) + '\\n'); console.error('Failed to connect to bus: Host is down'); process.exit(1);`);
    await chmod(program, 0o755);
    const err = await runRebootCommand([program, 'reboot', '0 tryboot'], { log }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BootError);
    expect((err as BootError).message).toBe(`reboot command '${program} reboot "--reboot-argument=0 tryboot"' failed: Failed to connect to bus: Host is down`);
    expect(await recorded()).toHaveLength(1);
  });

  it('a command ended by a signal from elsewhere (the shutdown it started stopping this service) counts as accepted, and says so', async () => {
    const program = join(dir, 'systemctl');
    await writeFile(program, `#!/bin/sh\necho "$@" >> ${JSON.stringify(calls)}\nkill -TERM $$\n`);
    await chmod(program, 0o755);
    await runRebootCommand([program, 'reboot', '--reboot-argument=0 tryboot'], { log });
    expect(logs).toEqual([{ msg: 'the reboot command was ended by the shutdown it started; taken as accepted', fields: { command: [program, 'reboot', '--reboot-argument=0 tryboot'], signal: 'SIGTERM', stderr: '' } }]);
  });

  it('a command that outlives its timeout is killed by us: that is a failure, not a shutdown', async () => {
    const program = join(dir, 'systemctl');
    await writeFile(program, `#!/bin/sh\nexec sleep 5\n`);
    await chmod(program, 0o755);
    const err = await runRebootCommand([program, 'reboot', '--reboot-argument=0 tryboot'], { log, timeoutMs: 200 }).catch((e: unknown) => e);
    expect((err as BootError).code).toBe('commandFailed');
    expect(logs).toEqual([]);
  });

  it('names the fix when a form it does not rewrite hits "Too many arguments"', async () => {
    const program = await systemctl('257');
    const err = await runRebootCommand([program, 'reboot', '0 tryboot', '--no-wall'], { log }).catch((e: unknown) => e);
    expect((err as BootError).code).toBe('commandFailed');
    expect((err as BootError).message).toMatch(/failed: Too many arguments\. \(systemd 253 and later take the reboot argument only as --reboot-argument=/);
  });

  it('refuses an empty command and names a missing program', async () => {
    await expect(runRebootCommand([])).rejects.toThrow('the reboot command is empty');
    await expect(runRebootCommand([join(dir, 'absent')])).rejects.toThrow(`reboot command '${join(dir, 'absent')}' failed: spawn ${join(dir, 'absent')} ENOENT`);
  });
});
