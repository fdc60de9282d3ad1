/**
 * What can go wrong with a download, and whether trying again can help. Each code is documented,
 * with its retry rule, in docs/download.md.
 */
export type DownloadErrorCode =
  | 'httpError' // the server answered an error status (429 and 5xx are transient)
  | 'networkError' // connection refused, reset or cut, a body shorter than declared, no data for the idle timeout
  | 'badResponse' // a 206 whose Content-Range or Content-Length does not fit the request
  | 'notHttps' // the URL, or a redirect, is not https
  | 'tlsError' // the server's certificate is not trusted or does not name the host
  | 'tooManyRedirects' // more redirects than allowed (a loop, most likely)
  | 'fileChanged' // the file on the server is not the one a resume started from: restart from byte 0
  | 'deadlineExceeded' // the whole attempt took longer than `deadlineMs`
  | 'tooSlow' // the average speed over `minSpeed.windowMs` fell below `minSpeed.bytesPerSecond`
  | 'proxyError'; // the proxy could not be reached, or refused the tunnel

/** A download that failed: `code` says what a program can act on, the message what a person can. */
export class DownloadError extends Error {
  override name = 'DownloadError';
  constructor(
    readonly code: DownloadErrorCode,
    message: string,
    /** Worth trying again later (network trouble, 5xx, 429), as opposed to a refusal (404, 403). */
    readonly transient: boolean,
  ) {
    super(message);
  }
}

// Node's and OpenSSL's codes for a certificate the client refuses. Trying again cannot help: the
// same certificate comes back until someone changes the server or the device's trust.
const CERT_NOT_TRUSTED = /^(UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|CERT_UNTRUSTED|CERT_SIGNATURE_FAILURE|CERT_CHAIN_TOO_LONG|INVALID_CA)$/;
const CERT_DATES = /^(CERT_HAS_EXPIRED|CERT_NOT_YET_VALID)$/;
const CERT_OTHER = /CERT|ERR_TLS|ERR_SSL/;

/** Names a failure of node's https or TLS, or of the proxy tunnel, for `host` (the URL's host, or `host:port`). */
export function toDownloadError(err: unknown, host: string): DownloadError {
  // A DownloadError may arrive wrapped as the cause of another error (an aborted request's).
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof DownloadError) return e;
  }
  const e = err as Error & { code?: string; cause?: NodeJS.ErrnoException };
  const code = findCode(e);
  const detail = `${e.message}${code && !e.message.includes(code) ? ` (${code})` : ''}`;
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return new DownloadError('tlsError', `the certificate of ${host} is not for that name, so it is refused: ${detail}`, false);
  }
  if (code && CERT_NOT_TRUSTED.test(code)) {
    return new DownloadError('tlsError', `the certificate of ${host} is not signed by a trusted CA (give its CA as downloadCaFile if it is a private server): ${detail}`, false);
  }
  if (code && CERT_DATES.test(code)) {
    return new DownloadError('tlsError', `the certificate of ${host} is outside its validity dates (check the device's clock): ${detail}`, false);
  }
  if (code && CERT_OTHER.test(code)) {
    return new DownloadError('tlsError', `TLS with ${host} failed: ${detail}`, false);
  }
  return new DownloadError('networkError', `cannot download from ${host}: ${detail}`, true);
}

/** The innermost error code: a wrapper's own code says less than its cause's. */
function findCode(err: unknown): string | undefined {
  let found: string | undefined;
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === 'string') found = code;
  }
  return found;
}
