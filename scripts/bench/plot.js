// An SVG of throughput over an install (MiB/s in 100 ms windows against seconds), drawn here:
// no plotting service, no dependency.

/** samples: [seconds, bytes so far] per chunk, one series per label. */
export function throughputSvg(series, { width = 720, height = 320, windowS = 0.1 } = {}) {
  const pad = { l: 56, r: 16, t: 24, b: 40 };
  const lines = series.map(({ label, samples }) => {
    const points = [];
    let from = 0;
    for (let i = 1; i < samples.length; i++) {
      if (samples[i][0] - samples[from][0] >= windowS || i === samples.length - 1) {
        const dt = samples[i][0] - samples[from][0];
        if (dt > 0) points.push([samples[i][0], (samples[i][1] - samples[from][1]) / 2 ** 20 / dt]);
        from = i;
      }
    }
    return { label, points };
  });
  const maxT = Math.max(1e-3, ...lines.flatMap((l) => l.points.map((p) => p[0])));
  const maxY = Math.max(1, ...lines.flatMap((l) => l.points.map((p) => p[1]))) * 1.1;
  const x = (t) => pad.l + (t / maxT) * (width - pad.l - pad.r);
  const y = (v) => height - pad.b - (v / maxY) * (height - pad.t - pad.b);
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];
  const ticks = (max, n) => Array.from({ length: n + 1 }, (_, i) => (max * i) / n);
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`];
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  for (const v of ticks(maxY, 5)) out.push(`<line x1="${pad.l}" x2="${width - pad.r}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#ddd"/><text x="${pad.l - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${v.toFixed(0)}</text>`);
  for (const t of ticks(maxT, 5)) out.push(`<text x="${x(t).toFixed(1)}" y="${height - pad.b + 16}" text-anchor="middle">${t.toFixed(1)}</text>`);
  out.push(`<text x="${(width + pad.l) / 2}" y="${height - 6}" text-anchor="middle">seconds since the daemon process started</text>`);
  out.push(`<text x="14" y="${height / 2}" transform="rotate(-90 14 ${height / 2})" text-anchor="middle">MiB/s (${windowS * 1000} ms windows)</text>`);
  lines.forEach(({ label, points }, i) => {
    const c = colors[i % colors.length];
    out.push(`<polyline fill="none" stroke="${c}" stroke-width="1.5" points="${points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ')}"/>`);
    out.push(`<text x="${pad.l + 8}" y="${pad.t + 4 + 14 * i}" fill="${c}">${label}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
