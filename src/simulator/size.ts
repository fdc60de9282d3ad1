/** Parses a size such as `64M`, `1G`, `512K` or `1048576` (binary units) into bytes. */
export function parseSize(text: string): number {
  const m = /^(\d+)([KMG]?)i?B?$/i.exec(text.trim());
  if (!m) throw new Error(`'${text}' is not a size (examples: 64M, 1G, 512K)`);
  const unit = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G'];
  const bytes = Number(m[1]) * unit;
  if (!Number.isSafeInteger(bytes) || bytes < 4096) throw new Error(`size '${text}' must be at least 4K`);
  if (bytes % 512 !== 0) throw new Error(`size '${text}' must be a whole number of 512-byte sectors`);
  return bytes;
}
