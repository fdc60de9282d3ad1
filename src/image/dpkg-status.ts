/**
 * dpkg's database file (var/lib/dpkg/status): stanzas of `Field: value` lines, continuation lines
 * starting with a space, separated by blank lines. Read and written as text, so the image's own
 * dpkg is never run.
 */
export type Stanza = Map<string, string>;

export function parseStanzas(text: string): Stanza[] {
  const out: Stanza[] = [];
  for (const block of text.split(/\n\s*\n/)) {
    const s: Stanza = new Map();
    let last: string | undefined;
    for (const line of block.split('\n')) {
      if (line === '') continue;
      if (/^\s/.test(line) && last) s.set(last, `${s.get(last)}\n${line}`);
      else {
        const at = line.indexOf(':');
        if (at <= 0) continue;
        last = line.slice(0, at);
        s.set(last, line.slice(at + 1).trim());
      }
    }
    if (s.size > 0) out.push(s);
  }
  return out;
}

export function formatStanzas(stanzas: Stanza[]): string {
  return stanzas.map((s) => [...s].map(([k, v]) => (v.startsWith('\n') ? `${k}:${v}` : `${k}: ${v}`)).join('\n') + '\n').join('\n');
}

export const isInstalled = (s: Stanza): boolean => s.get('Status') === 'install ok installed';

/** The version without epoch and Debian revision's suffixes, split at the first dots: "1:20.19.2+dfsg-1" -> 20. */
export function majorOf(version: string): number {
  return Number(/^(?:\d+:)?(\d+)/.exec(version)?.[1] ?? NaN);
}
