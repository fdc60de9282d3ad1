// Start-up time and peak memory of the light commands (`piota status --help`, `piota bundle info
// --help`), against the baseline of starting Node itself (`node -e 0`) in the same run, and the
// daemon's module graph for scale. Medians of 7 runs. Run with `npm run bench:startup`.
import process from 'node:process';
import { spawnSync } from 'node:child_process';
import { URL, fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../bin/piota.js', import.meta.url));
// Peak RSS of the child, reported by the child itself as it exits (fd 3).
const probe = 'data:text/javascript,import{writeSync}from"node:fs";process.on("exit",()=>writeSync(3,String(process.resourceUsage().maxRSS)))';

function run(args) {
  const t = process.hrtime.bigint();
  const r = spawnSync(process.execPath, ['--import', probe, ...args], { stdio: ['ignore', 'ignore', 'inherit', 'pipe'] });
  const s = Number(process.hrtime.bigint() - t) / 1e9;
  if (r.status !== 0 && r.status !== 2) throw new Error(`${args.join(' ')} exited ${r.status}`);
  return { s, rssMiB: Number(r.output[3].toString()) / 1024 };
}

function median(values) {
  const v = [...values].sort((a, b) => a - b);
  return v[Math.floor(v.length / 2)];
}

const cases = [
  ['node -e 0 (baseline)', ['-e', '0']],
  ['piota status --help', [bin, 'status', '--help']],
  ['piota bundle info --help', [bin, 'bundle', 'info', '--help']],
  ['piota daemon --help', [bin, 'daemon', '--help']],
  ['daemon module graph (import dist/agent/daemon.js)', ['-e', `await import(${JSON.stringify(new URL('../dist/agent/daemon.js', import.meta.url).href)})`, '--input-type=module']],
];
const results = [];
for (let i = 0; i < 7; i++) {
  for (const [name, args] of cases) {
    (results[name] ??= []).push(run(args));
  }
}
const base = median(results[cases[0][0]].map((r) => r.s));
console.log('start-up (median of 7)         wall s   ×node   peak RSS MiB');
for (const [name] of cases) {
  const s = median(results[name].map((r) => r.s));
  const rss = median(results[name].map((r) => r.rssMiB));
  console.log(`${name.padEnd(52)} ${s.toFixed(3)}  ${(s / base).toFixed(2).padStart(5)}  ${rss.toFixed(0).padStart(6)}`);
}
