// Decompression cost per codec, each in a process of its own, interleaved over rounds: what a
// faster codec than gzip would give the install path. zstd is measured where its npm packages can
// be loaded (they are not piota's dependencies): install them in a scratch directory and pass it.
// Usage: node scripts/bench/codecs.js IMAGE [--modules DIR/node_modules] [--rounds 3] [--codecs gzip,zstd-native,zstd-wasm,zstd-js]
//   e.g. (cd /tmp/z && npm i fzstd @bokuweb/zstd-wasm @mongodb-js/zstd@1) and --modules /tmp/z/node_modules
/* global URL */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { median } from './measure.js';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { modules: { type: 'string' }, rounds: { type: 'string', default: '3' }, codecs: { type: 'string' } } });
if (positionals.length !== 1) {
  console.error('usage: node scripts/bench/codecs.js IMAGE [--modules DIR/node_modules] [--rounds N]');
  process.exit(2);
}
const codecs = values.codecs?.split(',') ?? ['gzip', ...(values.modules ? ['zstd-native', 'zstd-wasm', 'zstd-js'] : [])];
const child = fileURLToPath(new URL('./codec-child.js', import.meta.url));
const runs = new Map(codecs.map((c) => [c, []]));
for (let r = 0; r < Number(values.rounds); r++) {
  for (const c of codecs) {
    const p = spawnSync(process.execPath, [child, c, positionals[0], values.modules ?? ''], { encoding: 'utf8' });
    if (p.status !== 0) {
      console.error(`${c}: ${p.stderr.trim().split('\n').pop()}`);
      continue;
    }
    runs.get(c).push(JSON.parse(p.stdout));
    console.error(`round ${r + 1} ${c}: ${p.stdout.trim()}`);
  }
}
console.log('| codec | stored/image | MiB/s of image | CPU s per GiB of image | RSS growth MiB |');
console.log('|---|---|---|---|---|');
for (const [c, rs] of runs) {
  if (rs.length === 0) continue;
  const m = (k) => median(rs.map((x) => x[k]));
  console.log(`| ${c} | ${m('ratio').toFixed(3)} | ${m('mibps').toFixed(0)} | ${m('cpuPerGiB').toFixed(2)} | ${m('rssGrowthMiB').toFixed(0)} |`);
}
