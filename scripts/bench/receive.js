// How node receives a large HTTPS body: its `https` client ('data' events, or an async iterator)
// against `tls.connect` with `onread` into one reused buffer (what src/download/http1-client.ts
// does). Each way runs in a process of its own, rounds interleaved; prints CPU seconds and RSS growth.
// Usage: node scripts/bench/receive.js [--mib 1024] [--rounds 3]
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { serveDirectory, writeRandomImage } from './fixture.js';

const CHILD = `
import https from 'node:https';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
const [mode, port, caFile] = process.argv.slice(1);
const ca = readFileSync(caFile, 'utf8');
const idle = process.memoryUsage().rss;
const into = Buffer.allocUnsafe(4 << 20);
let at = 0, total = 0;
const take = (piece) => { for (let p = 0; p < piece.length; ) { const n = piece.copy(into, at, p); at = (at + n) % into.length; p += n; } total += piece.length; };
const done = () => {
  const ru = process.resourceUsage();
  console.log(JSON.stringify({ total, cpu: (ru.userCPUTime + ru.systemCPUTime) / 1e6, growthMiB: (ru.maxRSS * 1024 - idle) / 2 ** 20 }));
};
if (mode === 'onread') {
  const s = tls.connect({ host: 'localhost', port: Number(port), ca, servername: 'localhost',
    onread: { buffer: () => into.subarray(at, Math.min(at + 65536, into.length)), callback: (n) => { at = (at + n) % into.length; total += n; return true; } } });
  s.on('secureConnect', () => s.write('GET /body HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n'));
  s.on('end', done);
} else {
  https.get({ host: 'localhost', port: Number(port), path: '/body', ca }, async (res) => {
    if (mode === 'data') { res.on('data', take); res.on('end', done); return; }
    for await (const piece of res) take(piece);
    done();
  });
}
`;

const { values } = parseArgs({ options: { mib: { type: 'string', default: '1024' }, rounds: { type: 'string', default: '3' } } });
const dir = await mkdtemp(join(tmpdir(), 'piota-bench-receive-'));
let server;
try {
  await writeRandomImage(join(dir, 'body'), Number(values.mib) * 2 ** 20);
  server = await serveDirectory(dir);
  const ways = { data: "node's https, 'data' events", iter: "node's https, for await", onread: 'tls.connect with onread' };
  const results = Object.fromEntries(Object.keys(ways).map((k) => [k, []]));
  for (let round = 0; round < Number(values.rounds); round++) {
    for (const mode of Object.keys(ways)) {
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', CHILD, mode, String(server.port), server.ca], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`${mode}: ${r.stderr}`);
      results[mode].push(JSON.parse(r.stdout));
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(`receiving a ${values.mib} MiB body over HTTPS on loopback, median of ${values.rounds} rounds`);
  for (const [mode, name] of Object.entries(ways)) {
    console.log(`  ${name.padEnd(30)} CPU ${median(results[mode].map((x) => x.cpu)).toFixed(2)} s   RSS growth ${median(results[mode].map((x) => x.growthMiB)).toFixed(0)} MiB`);
  }
} finally {
  server?.stop();
  await rm(dir, { recursive: true, force: true });
}
