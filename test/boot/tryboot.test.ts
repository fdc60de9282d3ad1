import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { mkdtemp, rm, writeFile, readFile, mkdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  TrybootBackend,
  BootError,
  inactiveSlot,
  encodeBootloaderValue,
  readAutoboot,
  AUTOBOOT_LENGTH,
  type TrybootOptions,
} from '../../src/boot/index.js';

let dir: string;
let options: TrybootOptions;
let calls: string;

/** A real reboot command: records its arguments in a file, exit code as asked. */
function recorder(file: string, exitCode = 0, ...args: string[]): string[] {
  const script = `require('fs').appendFileSync(process.argv[1], JSON.stringify(process.argv.slice(2)) + '\\n'); process.exit(${exitCode})`;
  return [process.execPath, '-e', script, file, ...args];
}

async function setDeviceTree(partition: number, tryboot: number): Promise<void> {
  await writeFile(join(options.deviceTreeDir, 'partition'), encodeBootloaderValue(partition));
  await writeFile(join(options.deviceTreeDir, 'tryboot'), encodeBootloaderValue(tryboot));
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'piota-tryboot-'));
  calls = join(dir, 'calls');
  options = {
    autobootFile: join(dir, 'autoboot.txt'),
    bootPartitions: { A: 2, B: 3 },
    deviceTreeDir: join(dir, 'dt'),
    rebootCommand: recorder(calls, 0, 'reboot'),
    trybootCommand: recorder(calls, 0, 'reboot', '0 tryboot'),
  };
  await mkdir(options.deviceTreeDir);
  // As an image builder would write it: not piota's fixed length.
  await writeFile(options.autobootFile, '[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n');
  await setDeviceTree(2, 0);
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('inactiveSlot', () => {
  it('is the other slot', () => {
    expect(inactiveSlot('A')).toBe('B');
    expect(inactiveSlot('B')).toBe('A');
  });
});

describe('TrybootBackend', () => {
  it('reads the booted slot, trial flag and committed slot', async () => {
    const boot = new TrybootBackend(options);
    expect(await boot.bootedSlot()).toBe('A');
    expect(await boot.isTrialBoot()).toBe(false);
    expect(await boot.committedSlot()).toBe('A');
    await setDeviceTree(3, 1);
    expect(await boot.bootedSlot()).toBe('B');
    expect(await boot.isTrialBoot()).toBe(true);
  });

  it('starts a trial: [tryboot] points at the slot, [all] unchanged, reboot with the tryboot command', async () => {
    const boot = new TrybootBackend(options);
    await boot.commit('A'); // piota's own fixed-length file from here on
    await boot.startTrial('B');
    expect(await readAutoboot(options.autobootFile)).toEqual({ bootPartition: 2, trybootPartition: 3 });
    expect(await readFile(calls, 'utf8')).toBe('["reboot","0 tryboot"]\n');
    expect(await boot.committedSlot()).toBe('A');
  });

  it('commits: [all] and [tryboot] both name the slot, and a plain reboot runs the reboot command', async () => {
    const boot = new TrybootBackend(options);
    await boot.commit('B');
    expect(await readAutoboot(options.autobootFile)).toEqual({ bootPartition: 3, trybootPartition: 3 });
    expect(await boot.committedSlot()).toBe('B');
    await boot.reboot();
    expect(await readFile(calls, 'utf8')).toBe('["reboot"]\n');
  });

  it('rewrites a file of its own length in place, keeping the same inode and size', async () => {
    const boot = new TrybootBackend(options);
    await boot.commit('A');
    const first = await stat(options.autobootFile);
    expect(first.size).toBe(AUTOBOOT_LENGTH);
    await boot.prepareTrial('B');
    await boot.commit('B');
    const after = await stat(options.autobootFile);
    expect(after.ino).toBe(first.ino);
    expect(after.size).toBe(AUTOBOOT_LENGTH);
    expect(await readAutoboot(options.autobootFile)).toEqual({ bootPartition: 3, trybootPartition: 3 });
  });

  it('refuses a trial of the committed slot', async () => {
    const boot = new TrybootBackend(options);
    await expect(boot.startTrial('A')).rejects.toThrow('refusing a trial of slot A');
    await expect(readFile(calls)).rejects.toThrow(); // no reboot
  });

  it('reports a failing reboot command with its message', async () => {
    const boot = new TrybootBackend({ ...options, rebootCommand: [process.execPath, '-e', 'console.error("Access denied"); process.exit(1)'] });
    const err = await boot.reboot().then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(BootError);
    expect((err as BootError).message).toContain('Access denied');
    await expect(new TrybootBackend({ ...options, rebootCommand: [join(dir, 'no-such-command')] }).reboot()).rejects.toThrow('reboot command');
  });

  it('names bad device-tree files and unknown partitions', async () => {
    const boot = new TrybootBackend(options);
    await writeFile(join(options.deviceTreeDir, 'partition'), Buffer.from([0, 0, 2]));
    await expect(boot.bootedSlot()).rejects.toThrow(`${join(options.deviceTreeDir, 'partition')}: holds 3 bytes, expected a 4-byte big-endian number`);
    await writeFile(join(options.deviceTreeDir, 'partition'), encodeBootloaderValue(7));
    await expect(boot.bootedSlot()).rejects.toThrow('partition 7 is neither slot A (2) nor slot B (3)');
    await rm(join(options.deviceTreeDir, 'tryboot'));
    await expect(boot.isTrialBoot()).rejects.toThrow("cannot read the bootloader's tryboot");
  });

  it('names a bad autoboot.txt and leaves it alone', async () => {
    await writeFile(options.autobootFile, '[all]\ntryboot_a_b=1\nboot_partition=2\nfoo=1\n');
    const boot = new TrybootBackend(options);
    await expect(boot.committedSlot()).rejects.toThrow(`${options.autobootFile} line 4: unknown setting 'foo'`);
    await expect(boot.startTrial('B')).rejects.toThrow("unknown setting 'foo'");
    expect(await readFile(options.autobootFile, 'utf8')).toContain('foo=1');
  });

  it('refuses a configuration that gives both slots one partition', () => {
    expect(() => new TrybootBackend({ ...options, bootPartitions: { A: 2, B: 2 } })).toThrow('both use partition 2');
  });
});
