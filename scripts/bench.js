#!/usr/bin/env node
/* global URL */
// `npm run bench`: the install path against the machine's limits, the firmwareUpdate answer time,
// the trial boot's time to applyComplete, and the light commands' start-up. Medians of interleaved
// rounds, each figure beside baselines measured in the same run. Writes the results into
// docs/benchmarks.md (between its bench markers) and docs/benchmarks-throughput.svg.
// Usage: npm run bench [-- --sizes 256,1024,4096] [-- --rounds 3] [-- --only install,hub,startup]
//        [-- --methods tls,sha256,disk,pipeline,piota,piotaReadback] [-- --no-docs]
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { benchInstall } from './bench/install.js';
import { throughputSvg } from './bench/plot.js';
import { installTable, goalsTable } from './bench/report.js';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '256,1024,4096' },
    rounds: { type: 'string', default: '3' },
    only: { type: 'string', default: 'install,hub,startup' },
    'no-docs': { type: 'boolean', default: false },
    // Install rows to run (tls, sha256, disk, pipeline, piota, piotaReadback); default all.
    methods: { type: 'string' },
  },
});
const sizes = values.sizes.split(',').map(Number);
const rounds = Number(values.rounds);
const only = new Set(values.only.split(','));
if (sizes.some((s) => !Number.isInteger(s) || s < 1) || !Number.isInteger(rounds) || rounds < 1) {
  console.error('bench: --sizes takes MiB counts (256,1024,4096), --rounds a whole number >= 1');
  process.exit(2);
}
const log = (line) => console.error(line);
const sections = [];
const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}, load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')} at the start`;
sections.push(`Run: \`npm run bench -- --sizes ${sizes.join(',')} --rounds ${rounds}\` on ${machine}, ${new Date().toISOString().slice(0, 16)}Z.`);

let installs = [];
if (only.has('install')) {
  for (const size of sizes) {
    log(`install benchmark, ${size} MiB image, ${rounds} interleaved rounds`);
    installs.push(await benchInstall(size, rounds, log, values.methods ? new Set(values.methods.split(',')) : null));
  }
  sections.push(installTable(installs));
}
let hub;
if (only.has('hub')) {
  const { benchHub } = await import('./bench/hub.js');
  log('firmwareUpdate answers and applyComplete after the trial boot');
  hub = await benchHub(log);
  sections.push(hub.markdown);
}
if (only.has('startup')) {
  const run = spawnSync(process.execPath, [fileURLToPath(new URL('./bench-startup.js', import.meta.url))], { encoding: 'utf8' });
  sections.push('### Start-up of the light commands\n\n```\n' + run.stdout.trim() + '\n```');
}
if (installs.length > 0) sections.push(goalsTable(installs, hub));
const markdown = sections.join('\n\n') + '\n';
console.log(markdown);

if (!values['no-docs']) {
  const doc = fileURLToPath(new URL('../docs/benchmarks.md', import.meta.url));
  const text = readFileSync(doc, 'utf8');
  const begin = '<!-- bench:results begin -->';
  const end = '<!-- bench:results end -->';
  const a = text.indexOf(begin);
  const b = text.indexOf(end);
  if (a < 0 || b < a) throw new Error(`${doc} lacks the ${begin} … ${end} markers`);
  writeFileSync(doc, text.slice(0, a + begin.length) + '\n\n' + markdown + '\n' + text.slice(b));
  if (installs.length > 0) {
    const series = installs.map((i) => ({ label: `${i.sizeMiB} MiB image (daemon path, no read-back)`, samples: i.samples }));
    writeFileSync(fileURLToPath(new URL('../docs/benchmarks-throughput.svg', import.meta.url)), throughputSvg(series));
  }
  log(`wrote ${doc}`);
}
