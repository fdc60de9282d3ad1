import type { FollowEvent } from './follow-update.js';

export interface PrinterOptions {
  json: boolean;
  /** stdout is a terminal: draw a live progress bar instead of plain lines. */
  tty: boolean;
  write(text: string): void;
}

/** Human and JSON renderings of trigger's events. */
export function followPrinter(options: PrinterOptions): (e: FollowEvent) => void {
  if (options.json) return (e) => options.write(JSON.stringify(e) + '\n');
  let barShown = false;
  let lastPlainDecile = -1;
  let rate: { at: number; bytes: number } | null = null;
  let bytesPerSecond = 0;
  const clock = (iso: string) => iso.slice(11, 19);
  const line = (text: string) => {
    if (barShown) {
      options.write('\n');
      barShown = false;
    }
    options.write(text + '\n');
  };
  return (e) => {
    switch (e.event) {
      case 'accepted':
        line(`${clock(e.time)}  accepted   ${e.message}${e.updateId ? ` (update ${e.updateId})` : ''}`);
        break;
      case 'status': {
        const extra = e.waitingFor ? ` (waiting for the ${e.waitingFor === 'applyWindow' ? 'maintenance window' : e.waitingFor}${e.applyAt ? `, opens ${e.applyAt}` : ''})` : '';
        const error = e.error ? ` — ${e.error.code}: ${e.error.message}` : '';
        line(`${clock(e.time)}  ${e.status}${extra}${error}`);
        break;
      }
      case 'progress': {
        const t = Date.parse(e.time);
        if (rate && t > rate.at) bytesPerSecond = ((e.bytes - rate.bytes) * 1000) / (t - rate.at);
        rate = { at: t, bytes: e.bytes };
        if (options.tty) {
          options.write(`\r${progressBar(e.bytes, e.totalBytes, bytesPerSecond)}\x1b[K`);
          barShown = true;
        } else {
          const decile = e.percent === null ? -1 : Math.floor(e.percent / 10);
          if (decile > lastPlainDecile) {
            lastPlainDecile = decile;
            line(`${clock(e.time)}    ${progressText(e.bytes, e.totalBytes, bytesPerSecond)}`);
          }
        }
        break;
      }
      case 'result':
        line(`result: ${e.result} — ${e.message}`);
        break;
    }
  };
}

export function progressBar(bytes: number, total: number | null, bytesPerSecond: number, width = 24): string {
  const fraction = total ? Math.min(1, bytes / total) : 0;
  const filled = Math.round(fraction * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${progressText(bytes, total, bytesPerSecond)}`;
}

function progressText(bytes: number, total: number | null, bytesPerSecond: number): string {
  const parts = [total ? `${Math.floor((bytes / total) * 100)}%  ${size(bytes)} of ${size(total)}` : size(bytes)];
  if (bytesPerSecond > 0) {
    parts.push(`${size(bytesPerSecond)}/s`);
    if (total) parts.push(`${Math.ceil((total - bytes) / bytesPerSecond)} s left`);
  }
  return parts.join('  ');
}

function size(n: number): string {
  if (n >= 1024 * 1024) return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${Math.round(n)} B`;
}
