import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, validateConfig, ConfigError } from '../../src/agent/config.js';

const example = JSON.parse(readFileSync(new URL('../../config.example.json', import.meta.url), 'utf8'));

function withChange(change: (c: Record<string, unknown>) => void): unknown {
  const c = structuredClone(example);
  change(c);
  return c;
}

describe('daemon config', () => {
  it('accepts config.example.json as shipped', () => {
    const c = validateConfig(example);
    expect(c.slots.B.rootfs).toBe('/dev/mmcblk0p6');
    expect(c.boot.trybootCommand).toEqual(['systemctl', 'reboot', '--reboot-argument=0 tryboot']);
    expect(c.trialTimeoutSeconds).toBe(300);
  });

  it('fills defaults for optional fields', () => {
    const c = validateConfig(withChange((c) => {
      delete c.trialTimeoutSeconds;
      delete c.stateDir;
    }));
    expect(c.trialTimeoutSeconds).toBe(300);
    expect(c.stateDir).toBe('/data/piota');
  });

  it.each([
    [(c: Record<string, unknown>) => (c.colour = 'red'), "unknown field 'colour'"],
    [(c: Record<string, unknown>) => delete c.model, 'model: expected a non-empty string'],
    [(c: Record<string, unknown>) => (c.stateDir = 'data'), 'stateDir: expected an absolute path'],
    [(c: Record<string, unknown>) => (c.trustedKeys = []), 'trustedKeys: expected a non-empty list'],
    [(c: Record<string, unknown>) => (c.trialTimeoutSeconds = -1), 'trialTimeoutSeconds: expected a whole number'],
    [(c: Record<string, unknown>) => ((c.slots as Record<string, unknown>).C = {}), "slots: unknown slot 'C'"],
    [(c: Record<string, unknown>) => ((c.slots as { B: Record<string, string> }).B = { rootfs: '/dev/x' }), 'both slots need the same partitions'],
    [(c: Record<string, unknown>) => ((c.slots as { B: Record<string, string> }).B.rootfs = '/dev/mmcblk0p5'), 'is also slots.A.rootfs'],
    [(c: Record<string, unknown>) => ((c.boot as Record<string, unknown>).backend = 'grub'), 'boot.backend: expected one of tryboot'],
    [(c: Record<string, unknown>) => ((c.boot as Record<string, unknown>).rebootCommand = 'reboot'), 'boot.rebootCommand: expected a command'],
    [(c: Record<string, unknown>) => (c.stateDir = '/dev/mmcblk0p5/x'), 'lies inside slot A rootfs'],
  ])('names the bad field (%#)', (change, message) => {
    expect(() => validateConfig(withChange(change))).toThrow(ConfigError);
    expect(() => validateConfig(withChange(change))).toThrow(message);
  });

  it('names the file when it is not JSON', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'piota-config-'));
    const p = join(dir, 'config.json');
    await writeFile(p, '{ nope');
    await expect(loadConfig(p)).rejects.toThrow(`config ${p}: not valid JSON`);
    await expect(loadConfig(join(dir, 'missing.json'))).rejects.toThrow('cannot read (ENOENT)');
  });
});
