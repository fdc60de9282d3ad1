import { describe, it, expect } from 'vitest';
import { parseAutoboot, serializeAutoboot, AUTOBOOT_LENGTH, BootError } from '../../src/boot/index.js';

function parseError(text: string): string {
  try {
    parseAutoboot(text, '/boot/autoboot.txt');
  } catch (err) {
    expect(err).toBeInstanceOf(BootError);
    return (err as Error).message;
  }
  throw new Error('expected a parse error');
}

describe('autoboot.txt', () => {
  it('parses the Raspberry Pi documentation example', () => {
    expect(parseAutoboot('[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n')).toEqual({
      bootPartition: 2,
      trybootPartition: 3,
    });
  });

  it('accepts comments, blank lines, CRLF and a file without [tryboot]', () => {
    expect(parseAutoboot('# boot config\r\n\r\n[all]\r\ntryboot_a_b=1\r\nboot_partition=2\r\n')).toEqual({
      bootPartition: 2,
      trybootPartition: null,
    });
    // Settings before any section belong to [all], as in config.txt.
    expect(parseAutoboot('tryboot_a_b=1\nboot_partition=3\n')).toEqual({ bootPartition: 3, trybootPartition: null });
  });

  it('serializes to a fixed length that parses back to the same thing', () => {
    for (const [a, b] of [
      [2, 3],
      [3, 2],
      [2, 2],
      [9, 12],
      [62, 63],
    ]) {
      const text = serializeAutoboot({ bootPartition: a, trybootPartition: b });
      expect(Buffer.byteLength(text)).toBe(AUTOBOOT_LENGTH);
      expect(AUTOBOOT_LENGTH).toBeLessThanOrEqual(512);
      expect(parseAutoboot(text)).toEqual({ bootPartition: a, trybootPartition: b });
    }
    expect(serializeAutoboot({ bootPartition: 2, trybootPartition: null })).toContain('[tryboot]\nboot_partition=2\n');
    // The one boot-partition rule (1-63) holds both ways.
    expect(() => serializeAutoboot({ bootPartition: 64, trybootPartition: 2 })).toThrow(/from 1 to 63, got 64/);
    expect(() => parseAutoboot('[all]\ntryboot_a_b=1\nboot_partition=100\n')).toThrow(/not a partition number \(1-63\)/);
  });

  it('names the problem in bad files', () => {
    expect(parseError('[all]\ntryboot_a_b=1\nboot_partition=2\n[pi4]\n')).toBe(
      '/boot/autoboot.txt line 4: section [pi4] is not supported (piota understands [all] and [tryboot])',
    );
    expect(parseError('[all]\ntryboot_a_b=1\nboot_partition=2\nkernel=foo.img\n')).toContain("line 4: unknown setting 'kernel'");
    expect(parseError('[all]\ntryboot_a_b=1\nboot_partition=two\n')).toContain("line 3: boot_partition must be a whole number, got 'two'");
    expect(parseError('[all]\ntryboot_a_b=1\nboot_partition=2\nboot_partition=3\n')).toContain('line 4: boot_partition set twice in [all]');
    expect(parseError('[all]\nboot_partition=2\n')).toContain('[all] must set tryboot_a_b=1 for A/B tryboot (missing)');
    expect(parseError('[all]\ntryboot_a_b=0\nboot_partition=2\n')).toContain('(got 0)');
    expect(parseError('[all]\ntryboot_a_b=1\n[tryboot]\nboot_partition=3\n')).toContain('[all] has no boot_partition');
    expect(parseError('[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\ntryboot_a_b=1\n')).toContain('line 5: tryboot_a_b belongs in [all]');
    expect(parseError('[all]\ntryboot_a_b=1\nboot_partition=0\n')).toContain('[all] boot_partition 0 is not a partition number');
    expect(parseError('garbage\n')).toContain("line 1: expected 'name=value' or '[section]', got 'garbage'");
    expect(parseError('')).toContain('tryboot_a_b=1');
  });
});
