import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls';
import { DownloadError } from './errors.js';

/**
 * The CAs a download trusts. Node's `ca` option REPLACES its roots, so an extra CA alone would make
 * a private mirror work but break its redirect to a public CDN: the extra PEM is added to node's
 * bundled Mozilla roots (`tls.rootCertificates`) instead. Without an extra CA: undefined, node's
 * defaults (which also honour NODE_EXTRA_CA_CERTS).
 */
export function trustedCas(extraPem?: string): string[] | undefined {
  if (extraPem === undefined || extraPem === '') return undefined;
  if (!extraPem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new DownloadError('tlsError', 'the extra CA given for downloads (downloadCaFile) holds no PEM certificate (-----BEGIN CERTIFICATE-----)', false);
  }
  return [...rootCertificates, extraPem];
}

let cached: { pem: string; context: SecureContext } | undefined;

/**
 * The TLS context for `trustedCas(extraPem)`, made once: parsing some 150 roots takes tens of
 * milliseconds on a PC and more on a Pi, and every connection (each redirect, each retry) needs it.
 */
export function trustContext(extraPem?: string): SecureContext | undefined {
  const ca = trustedCas(extraPem);
  if (!ca || !extraPem) return undefined;
  if (cached?.pem !== extraPem) {
    try {
      cached = { pem: extraPem, context: createSecureContext({ ca }) };
    } catch (err) {
      throw new DownloadError('tlsError', `the extra CA given for downloads (downloadCaFile) cannot be read: ${(err as Error).message}`, false);
    }
  }
  return cached.context;
}
