// Markdown of the bench results: the install table (with ratios to the pipeline measured in the
// same run) and the goals, each with the figure that meets or misses it.

const f = (v, d = 2) => (Number.isFinite(v) ? v.toFixed(d) : '–');

export function installTable(installs) {
  const out = [];
  for (const { sizeMiB, bundleSize, slotKind, rows } of installs) {
    const pipe = rows.find((r) => r.key === 'pipeline');
    out.push(`### Install of a ${sizeMiB} MiB random image (uncompressed bundle of ${(bundleSize / 2 ** 20).toFixed(0)} MiB, HTTPS on loopback, slot on a ${slotKind})`);
    out.push('');
    out.push('| method | wall s | CPU s | peak RSS MiB | wall ×pipeline | CPU ×pipeline | daemon idle RSS → growth MiB |');
    out.push('|---|---|---|---|---|---|---|');
    for (const r of rows) {
      const growth = r.growthMiB === undefined ? '' : `${f(r.idleRssMiB, 0)} → +${f(r.growthMiB, 0)}`;
      out.push(`| ${r.name} | ${f(r.wall)} | ${f(r.cpu)} | ${f(r.rssMiB, 0)} | ${pipe ? f(r.wall / pipe.wall) : '–'} | ${pipe ? f(r.cpu / pipe.cpu) : '–'} | ${growth} |`);
    }
    const rb = rows.find((r) => r.key === 'piotaReadback');
    if (rb && Number.isFinite(rb.readbackS)) out.push('', `Read-back alone (O_DIRECT from the slot, hashed): ${f(rb.readbackS)} s.`);
    out.push('');
  }
  return out.join('\n');
}

export function goalsTable(installs, hub) {
  const row = (goal, figure, ok) => `| ${goal} | ${figure} | ${ok === undefined ? 'not measured' : ok ? 'met' : '**missed**'} |`;
  const at = (mib) => installs.find((i) => i.sizeMiB === mib);
  const pick = (i, key) => i?.rows.find((r) => r.key === key);
  const out = ['### Goals', '', '| goal | figure in this run | |', '|---|---|---|'];
  const headline = at(1024) ?? installs[Math.floor(installs.length / 2)];
  const p = pick(headline, 'piota');
  const pr = pick(headline, 'piotaReadback');
  const pipe = pick(headline, 'pipeline');
  const size = headline?.sizeMiB;
  if (p && pipe) {
    out.push(row(`${size} MiB install ≤ 0.55× the pipeline's wall time`, `${f(p.wall / pipe.wall)}× (${f(p.wall)} s vs ${f(pipe.wall)} s)`, p.wall / pipe.wall <= 0.55));
    if (pr) out.push(row(`… ≤ 0.85× with read-back`, `${f(pr.wall / pipe.wall)}× (${f(pr.wall)} s)`, pr.wall / pipe.wall <= 0.85));
    out.push(row(`CPU ≤ 0.6× the pipeline's`, `${f(p.cpu / pipe.cpu)}× (${f(p.cpu)} s vs ${f(pipe.cpu)} s)`, p.cpu / pipe.cpu <= 0.6));
  }
  const big = installs.reduce((a, b) => (b.sizeMiB > a.sizeMiB ? b : a), installs[0]);
  const small = installs.reduce((a, b) => (b.sizeMiB < a.sizeMiB ? b : a), installs[0]);
  const gBig = pick(big, 'piota')?.growthMiB;
  const gSmall = pick(small, 'piota')?.growthMiB;
  out.push(row(`memory growth over idle ≤ 32 MiB (${big.sizeMiB} MiB image)`, `+${f(gBig, 1)} MiB over ${f(pick(big, 'piota')?.idleRssMiB, 0)} MiB idle`, gBig <= 32));
  if (big !== small) out.push(row(`growth differs < 5 MiB between ${small.sizeMiB} MiB and ${big.sizeMiB} MiB`, `${f(Math.abs(gBig - gSmall), 1)} MiB`, Math.abs(gBig - gSmall) < 5));
  out.push(row('firmwareUpdate p99 ≤ 50 ms', hub ? `${f(hub.p99Ms, 1)} ms` : '–', hub ? hub.p99Ms <= 50 : undefined));
  out.push(row("applyComplete ≤ 2 s after the trial boot's hub connection", hub?.applyS !== undefined ? `${f(hub.applyS)} s` : '–', hub?.applyS !== undefined ? hub.applyS <= 2 : undefined));
  return out.join('\n');
}
