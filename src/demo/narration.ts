import { open } from 'node:fs/promises';

/** What each workflow step means, in plain words, for the demo. */
const MEANING: Record<string, (fields: Record<string, unknown>) => string> = {
  waiting: (f) => `accepted the update; it will go to slot ${f.targetSlot ?? 'B'} (the slot it is not running from)`,
  downloading: () => 'downloading: signature checked against the trusted key before a byte is written; each chunk hash-checked, then streamed into slot B',
  downloadComplete: () => 'download complete: every chunk verified and on the medium',
  verifying: () => 'reading slot B back from the medium (not the page cache) and checking it against the signed sha256',
  rebooting: () => 'switching the boot to slot B for one trial (autoboot.txt [tryboot]) and rebooting with "0 tryboot"',
  trial: () => 'trial boot of slot B: the daemon started there and checks it can reach the hub',
  committing: () => 'the trial is healthy: committing slot B (autoboot.txt [all]) so every boot uses it',
  applyComplete: () => 'committed: slot B is the new normal',
  applyFailed: (f) => `the update failed and the Pi is back on its old slot (${JSON.stringify(f.error ?? '')})`,
  downloadFailed: (f) => `the download was refused (${JSON.stringify(f.error ?? '')}); nothing was switched`,
};

/**
 * Follows the simulated Pi's daemon log (JSON lines) and turns its state changes into sentences.
 * Returns a function that stops following.
 */
export function narrateDaemonLog(logFile: string, say: (line: string) => void): () => void {
  let offset = 0;
  let stopped = false;
  let partial = '';
  const seen = new Set<string>();
  const poll = async () => {
    while (!stopped) {
      const fh = await open(logFile, 'r').catch(() => undefined);
      if (fh) {
        const { size } = await fh.stat();
        if (size > offset) {
          const buf = Buffer.alloc(size - offset);
          await fh.read(buf, 0, buf.length, offset);
          offset = size;
          partial += buf.toString('utf8');
          const lines = partial.split('\n');
          partial = lines.pop() ?? '';
          for (const line of lines) narrate(line);
        }
        await fh.close();
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const narrate = (line: string) => {
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    if (entry.msg === 'piota daemon starting') {
      say(`daemon started on slot ${entry.bootedSlot}${entry.trial ? ' (trial boot)' : ''}, running ${entry.version}`);
      return;
    }
    const phase = typeof entry.msg === 'string' && entry.msg.startsWith('update ') ? entry.msg.slice(7) : undefined;
    const meaning = phase && MEANING[phase];
    if (!meaning) return;
    const key = `${entry.updateId}:${phase}`;
    if (seen.has(key)) return;
    seen.add(key);
    say(meaning(entry));
  };
  void poll();
  return () => {
    stopped = true;
  };
}
