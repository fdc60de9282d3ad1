// One codec: compress an image in 4 MiB chunks (as bundles do), then time expanding every chunk twice.
import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import { gzipSync, gunzip } from 'node:zlib';

async function main() {
  const [codec, file, modules] = process.argv.slice(2);
  const load = (name) => createRequire(modules + '/')(name);
  const image = readFileSync(file);
  const CHUNK = 4 << 20;
  const chunks = [];
  for (let at = 0; at < image.length; at += CHUNK) chunks.push(image.subarray(at, at + CHUNK));
  let stored;
  let expand;
  if (codec === 'gzip') {
    stored = chunks.map((c) => gzipSync(c));
    const g = promisify(gunzip);
    expand = (s, n) => g(s, { maxOutputLength: n });
  } else {
    const wasm = load('@bokuweb/zstd-wasm');
    await wasm.init();
    stored = chunks.map((c) => Buffer.from(wasm.compress(c, 3))); // level 3, the frame records its size
    if (codec === 'zstd-native') {
      const native = load('@mongodb-js/zstd');
      expand = (s) => native.decompress(s);
    } else if (codec === 'zstd-wasm') {
      expand = (s, n) => wasm.decompress(s, { defaultHeapSize: n });
    } else {
      const fzstd = load('fzstd');
      expand = (s, n) => fzstd.decompress(s, Buffer.allocUnsafe(n));
    }
  }
  const storedBytes = stored.reduce((a, s) => a + s.length, 0);
  const rss0 = process.memoryUsage().rss;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  let out = 0;
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < stored.length; i++) {
      const d = await expand(stored[i], chunks[i].length);
      if (d.length !== chunks[i].length) throw new Error(`${codec}: chunk ${i} expanded to ${d.length} bytes`);
      out += d.length;
    }
  }
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  console.log(JSON.stringify({
    ratio: storedBytes / image.length,
    mibps: out / 2 ** 20 / s,
    cpuPerGiB: (cpu.user + cpu.system) / 1e6 / (out / 2 ** 30),
    rssGrowthMiB: (process.resourceUsage().maxRSS * 1024 - rss0) / 2 ** 20,
  }));
}
main().catch((err) => {
  console.error(err.message);
  process.exit(1);
});
