// Wall time, CPU seconds and peak RSS of a child process tree, measured by GNU time (wait4's
// rusage: CPU summed over the tree, peak RSS of its largest process). Medians over rounds.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const HAS_GNU_TIME = existsSync('/usr/bin/time');

/** Runs `argv`; resolves { wall, cpu, rssMiB, stdout } or rejects naming the command and its stderr. */
export function measure(argv, { env } = {}) {
  const report = join(tmpdir(), `piota-bench-time-${process.pid}-${Math.random().toString(36).slice(2)}`);
  const full = HAS_GNU_TIME ? ['/usr/bin/time', '-o', report, '-f', '%e %U %S %M', ...argv] : argv;
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const child = spawn(full[0], full.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => {
      const wallNode = Number(process.hrtime.bigint() - started) / 1e9;
      let wall = wallNode;
      let cpu = NaN;
      let rssMiB = NaN;
      if (HAS_GNU_TIME && existsSync(report)) {
        const last = readFileSync(report, 'utf8').trim().split('\n').pop() ?? '';
        rmSync(report, { force: true });
        const [e, u, s, m] = last.split(' ').map(Number);
        if ([e, u, s, m].every(Number.isFinite)) {
          wall = e;
          cpu = u + s;
          rssMiB = m / 1024;
        }
      }
      if (code !== 0) reject(new Error(`${argv.join(' ')} exited ${code}: ${stderr.trim().slice(-500)}`));
      else resolve({ wall, cpu, rssMiB, stdout });
    });
  });
}

export function median(values) {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

export function percentile(values, p) {
  const v = [...values].sort((a, b) => a - b);
  return v[Math.min(v.length - 1, Math.ceil((p / 100) * v.length) - 1)];
}
