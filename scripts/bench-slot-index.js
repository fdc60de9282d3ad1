// npm run bench:slot-index [-- --device PATH] [--paces 16,0]: what the idle build of a slot index
// costs (docs/adaptive-updates.md, "Slot index"). For each pace (MiB/s; 0 = unpaced) it builds the
// index of a 1 GiB partition (a file of non-zero bytes written once, or --device) and prints the
// wall time, the process's CPU time as a share of one core, and how late the event loop ran (what
// the daemon's other work, such as a method call, would wait).
import { randomBytes } from 'node:crypto';
import { open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { buildSlotIndex } from '../dist/adaptive/slot-index.js';

const MiB = 1024 * 1024;
const { values } = parseArgs({ options: { device: { type: 'string' }, paces: { type: 'string', default: '16,0' }, size: { type: 'string', default: '1024' } } });

let device = values.device;
let made = false;
if (!device) {
  device = join(tmpdir(), `piota-bench-slot-index-${process.pid}.img`);
  made = true;
  const fh = await open(device, 'w');
  const piece = randomBytes(4 * MiB);
  // Distinct blocks (random bytes, each block stamped with its offset), so nothing about the content is special.
  for (let at = 0; at < Number(values.size) * MiB; at += piece.length) {
    for (let b = 0; b < piece.length; b += 4096) piece.writeDoubleLE(at + b, b);
    await fh.write(piece, 0, piece.length, at);
  }
  await fh.close();
}
const size = (await stat(device)).size;
console.log(`slot index of ${(size / MiB).toFixed(0)} MiB (${device}), 4 KiB blocks, ${process.arch}, node ${process.version}`);
try {
  // What the event loop shows on this machine with no build at all, to read the figures below against.
  const idle = monitorEventLoopDelay({ resolution: 10 });
  idle.enable();
  await sleep(5000);
  idle.disable();
  console.log(`no build (5 s): event loop late p99 ${(idle.percentile(99) / 1e6).toFixed(1)} ms, max ${(idle.max / 1e6).toFixed(1)} ms`);
  for (const pace of values.paces.split(',').map(Number)) {
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    const cpu = process.cpuUsage();
    const started = process.hrtime.bigint();
    await buildSlotIndex(device, size, { bytesPerSecond: pace * MiB });
    const wallS = Number(process.hrtime.bigint() - started) / 1e9;
    const used = process.cpuUsage(cpu);
    delay.disable();
    const cpuS = (used.user + used.system) / 1e6;
    console.log(
      `pace ${pace === 0 ? 'unpaced' : `${pace} MiB/s`}: ${wallS.toFixed(1)} s, ${(size / MiB / wallS).toFixed(1)} MiB/s, ` +
        `CPU ${cpuS.toFixed(1)} s = ${((cpuS / wallS) * 100).toFixed(1)} % of one core, ` +
        `event loop late p99 ${(delay.percentile(99) / 1e6).toFixed(1)} ms, max ${(delay.max / 1e6).toFixed(1)} ms`,
    );
  }
} finally {
  if (made) await rm(device, { force: true });
}
