import type { RolloutStatus } from './status.js';

const pct = (r: number | null) => (r === null ? '-' : `${(r * 100).toFixed(1)}%`);

/** `piota rollout status` as text: the state and why, one line per wave, the failed and offline devices. */
export function renderStatus(s: RolloutStatus, options: { maxListed?: number } = {}): string {
  const max = options.maxListed ?? 20;
  const lines: string[] = [];
  lines.push(`rollout ${s.name}: ${s.state}${s.reason ? ` (${s.reason})` : ''}`);
  lines.push(`  release ${s.release.version} ${s.release.fwPackageUri}`);
  lines.push(`  target  ${s.target}: ${s.targetedDevices} device(s) at start, via ${s.via}`);
  lines.push(`  failure rate ${pct(s.failureRate)} (halts at ${pct(s.halt.failureRate)} with at least ${s.halt.minFailed} failed): ${s.halt.verdict}`);
  const t = s.totals;
  lines.push(`  overall ${t.devices} device(s): ${t.succeeded} succeeded, ${t.failed} failed, ${t.offline} offline, ${t.running} running`);
  lines.push('  wave  reach  devices  pending waiting downloading applying  complete applyFailed downloadFailed refused offline  state');
  for (const w of s.waves) {
    const b = w.byStage;
    const cols = [b.pending, b.waiting, b.downloading, b.applying, b.applyComplete, b.applyFailed, b.downloadFailed, b.refused, b.offline];
    const widths = [7, 7, 11, 8, 9, 11, 14, 7, 7];
    lines.push(`  ${String(w.wave).padStart(4)}  ${String(w.cumulativeSize).padStart(5)}  ${String(w.devices).padStart(7)}  ${cols.map((c, i) => String(c).padStart(widths[i])).join(' ')}  ${w.stage}${w.endReason ? `: ${w.endReason}` : ''}`);
  }
  if (s.failedDevices.length) {
    lines.push(`  failed devices (${s.failedDevices.length}):`);
    for (const f of s.failedDevices.slice(0, max)) lines.push(`    ${f.deviceId} (wave ${f.wave}) ${f.stage} ${f.code}: ${f.message}`);
    if (s.failedDevices.length > max) lines.push(`    … and ${s.failedDevices.length - max} more (--json lists them all)`);
  }
  if (s.offlineDevices.length) {
    const names = s.offlineDevices.slice(0, max).map((d) => d.deviceId).join(', ');
    lines.push(`  offline, not counted as failed (${s.offlineDevices.length}); they get the release as a desired property when they connect: ${names}${s.offlineDevices.length > max ? ', …' : ''}`);
  }
  if (s.controller) lines.push(`  controller ${s.controller.owner}, lease ${s.controller.live ? `until ${s.controller.expiresAt}` : `expired at ${s.controller.expiresAt}`}`);
  else if (s.state === 'running') lines.push(`  no controller drives it: piota rollout run ${s.name}`);
  return lines.join('\n') + '\n';
}
