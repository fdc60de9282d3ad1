import type { IncomingHttpHeaders } from 'node:http';
import { DownloadError } from './errors.js';

/** What a 200 or 206 says about the body, checked against what was asked. */
export interface ResponsePlan {
  /** Size of the whole file, when the server says it. */
  totalSize: number | null;
  /** Bytes the body declares (Content-Length, or the Content-Range span): fewer is a broken body. */
  bodyLength: number | null;
  /** Bytes to drop from the body's front (a server that ignored Range for the same file). */
  skip: number;
  validator: string | null;
  restartedFromZero: boolean;
}

export interface AskedFor {
  start: number;
  /** The first byte not asked for (a bounded Range), if any. */
  end?: number;
  ifRange?: string;
  expectedTotal?: number;
}

/**
 * Reads a 200 or 206 against the request: which bytes the body holds, and whether the file is still
 * the one a resume started from. Throws `badResponse` for a 206 that does not fit the request, and
 * `fileChanged` when the file is provably another one (docs/download.md has the table).
 */
export function planResponse(status: 200 | 206, h: IncomingHttpHeaders, asked: AskedFor, where: string): ResponsePlan {
  const declared = contentLength(h);
  const validator = validatorOf(h);
  const { start, ifRange, expectedTotal } = asked;
  let plan: ResponsePlan;
  if (status === 206) {
    const range = parseContentRange(h['content-range']);
    // A bounded range ends where asked, or at the file's end when the file is shorter.
    const lastWanted = asked.end === undefined ? undefined : Math.min(asked.end, range?.total ?? asked.end) - 1;
    if (!range || range.first !== start || (declared !== null && declared !== range.length) || (lastWanted !== undefined && range.first + range.length - 1 !== lastWanted)) {
      throw new DownloadError('badResponse', `${where} answered a range request with Content-Range '${h['content-range'] ?? ''}' and Content-Length ${declared ?? 'none'}, expected bytes ${start}-${asked.end === undefined ? '' : asked.end - 1}`, true);
    }
    // A server that honours Range but not If-Range would splice two files: its validator tells.
    if (ifRange !== undefined && sameFile(h, ifRange) === false) throw changed(where, `its validator is now ${validator}, not ${ifRange}`);
    plan = { totalSize: range.total, bodyLength: range.length, skip: 0, validator, restartedFromZero: false };
  } else {
    // A 200 to a ranged request: with If-Range, the file changed unless its validator proves otherwise.
    const restarted = start > 0 && ifRange !== undefined && sameFile(h, ifRange) !== true;
    plan = { totalSize: declared, bodyLength: declared, skip: restarted ? 0 : start, validator, restartedFromZero: restarted };
  }
  if (!plan.restartedFromZero && expectedTotal !== undefined && plan.totalSize !== null && plan.totalSize !== expectedTotal) {
    throw changed(where, `it now has ${plan.totalSize} bytes, not ${expectedTotal}`);
  }
  return plan;
}

function changed(where: string, how: string): DownloadError {
  return new DownloadError('fileChanged', `the file at ${where} changed since this download started (${how}); start again from byte 0`, true);
}

function contentLength(h: IncomingHttpHeaders): number | null {
  const raw = h['content-length'];
  return raw !== undefined && /^\d+$/.test(raw) ? Number(raw) : null;
}

/**
 * A strong ETag, else Last-Modified. A weak ETag (W/...) may not be used in If-Range; a date may,
 * though it is only as exact as its second (docs/download.md says so).
 */
function validatorOf(h: IncomingHttpHeaders): string | null {
  const etag = h.etag;
  if (etag && !etag.startsWith('W/')) return etag;
  return h['last-modified'] ?? null;
}

/** Whether the response carries `validator` (true), another one of its kind (false), or none (null). */
function sameFile(h: IncomingHttpHeaders, validator: string): boolean | null {
  const current = validator.startsWith('"') ? h.etag : h['last-modified'];
  return current === undefined ? null : current === validator;
}

function parseContentRange(raw: string | undefined): { first: number; length: number; total: number | null } | null {
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(raw ?? '');
  if (!m) return null;
  const [first, last] = [Number(m[1]), Number(m[2])];
  const total = m[3] === '*' ? null : Number(m[3]);
  if (last < first || (total !== null && last >= total)) return null;
  return { first, length: last - first + 1, total };
}
