/**
 * The .deb of this checkout (scripts/build-deb.sh --no-build), built once and cached under a key of
 * everything that goes into it, so the image tests and the Pi-in-a-box fixture share one package
 * instead of each paying for a build (it installs the production dependencies: a minute or more on
 * a loaded machine). test/packaging/deb.test.ts still builds its own: building is what it tests.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CACHE_DIR } from '../systemd/rig.js';

const repo = fileURLToPath(new URL('../..', import.meta.url));

function run(command: string, args: readonly string[]): string {
  const r = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (exit ${r.status}): ${(r.stderr || r.error?.message || '').slice(-2000)}`);
  return r.stdout;
}

/** sha256 (16 hex digits) of what goes into the package: the built program, the lock file, the units and scripts. */
export function packageInputsKey(): string {
  const hash = createHash('sha256');
  const files = run('sh', ['-c', 'cd "$1" && find dist -name "*.js" -type f | sort; ls package.json package-lock.json config.example.json bin/piota.js scripts/build-deb.sh scripts/install.sh scripts/trial-guard.sh systemd/*', 'sh', repo])
    .split('\n')
    .filter(Boolean);
  for (const f of files) hash.update(f).update(readFileSync(join(repo, f)));
  return hash.digest('hex').slice(0, 16);
}

/** The path of the cached .deb for the current build (dist/ must be built). */
export function piotaDeb(): string {
  const dir = join(CACHE_DIR, `deb-${packageInputsKey()}`);
  const found = () => (existsSync(dir) ? readdirSync(dir).find((f) => f.endsWith('.deb')) : undefined);
  let deb = found();
  if (!deb) {
    mkdirSync(CACHE_DIR, { recursive: true });
    // Built beside and renamed into place: test files running at once never see half a package.
    const work = join(CACHE_DIR, `deb-build-${process.pid}-${Date.now()}`);
    mkdirSync(work);
    try {
      run('bash', [join(repo, 'scripts/build-deb.sh'), '--no-build', '--out', work]);
      try {
        renameSync(work, dir);
      } catch {
        // Another test file finished the same build first: use that one.
      }
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
    for (const old of readdirSync(CACHE_DIR).filter((d) => /^deb-[0-9a-f]{16}$/.test(d) && join(CACHE_DIR, d) !== dir)) {
      rmSync(join(CACHE_DIR, old), { recursive: true, force: true });
    }
    deb = found();
    if (!deb) throw new Error(`scripts/build-deb.sh left no .deb in ${dir}`);
  }
  return join(dir, deb);
}
