import { describe, it, expect } from 'vitest';
import { readFileSync, existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Light commands stay light: what a command's module imports statically (transitively, following
 * relative imports through src/) must not include the device SDK, the service SDK or the
 * daemon. Dynamic `import()`s are what keep heavy parts out, and are not followed.
 */
const src = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');
const HEAVY = ['azure-iot-device', 'azure-iot-device-mqtt', 'azure-iothub', 'aedes'];

function staticImports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const found: string[] = [];
  // `import ... from 'x'` and `export ... from 'x'`, not `import('x')` and not `import type`.
  for (const m of text.matchAll(/^(?:import|export)\s+(?!type\b)[^;]*?\sfrom\s+'([^']+)';/gms)) found.push(m[1]);
  for (const m of text.matchAll(/^import\s+'([^']+)';/gm)) found.push(m[1]);
  return found;
}

function closure(entry: string): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const queue = [entry];
  while (queue.length) {
    const file = queue.pop()!;
    if (files.has(file)) continue;
    files.add(file);
    for (const spec of staticImports(file)) {
      if (spec.startsWith('.')) {
        const ts = resolve(dirname(file), spec).replace(/\.js$/, '.ts');
        if (existsSync(ts)) queue.push(ts);
      } else if (!spec.startsWith('node:')) {
        packages.add(spec.split('/')[0]);
      }
    }
  }
  return { files, packages };
}

describe('light commands', () => {
  it.each(['status.ts', 'bundle-info.ts', 'bundle-verify.ts', 'config-check.ts', 'main.ts'])(
    'src/cli/%s loads neither an Azure SDK nor the daemon',
    (file) => {
      const { files, packages } = closure(join(src, 'cli', file));
      expect([...packages].filter((p) => HEAVY.includes(p))).toEqual([]);
      expect([...files].map((f) => f.slice(src.length + 1))).not.toContain('agent/daemon.ts');
      expect(files.size).toBeGreaterThan(1);
    },
  );

  it('the check itself sees a heavy import where there is one', () => {
    expect(closure(join(src, 'agent', 'daemon.ts')).packages.has('azure-iot-device')).toBe(true);
  });
});
