import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** A parsed `SharedAccessSignature sr=..&sig=..&se=..[&skn=..]` token; `srRaw` is sr as it was signed. */
export interface SasToken {
  srRaw: string;
  seRaw: string;
  resource: string;
  signature: string;
  expiry: number;
  keyName?: string;
}

/** Why a token was refused; the emulator turns these into MQTT return codes or HTTP 401 bodies. */
export class SasError extends Error {
  override name = 'SasError';
}

/** A fresh 256-bit key, base64, as IoT Hub generates for devices and policies. */
export function generateKey(): string {
  return randomBytes(32).toString('base64');
}

/** Parses a SAS token string; throws SasError naming the missing or malformed field. */
export function parseSasToken(text: string): SasToken {
  const prefix = 'SharedAccessSignature ';
  if (!text.startsWith(prefix)) throw new SasError('not a SharedAccessSignature token');
  const fields = new Map<string, string>();
  for (const part of text.slice(prefix.length).split('&')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new SasError(`malformed token field '${part}'`);
    fields.set(part.slice(0, eq), part.slice(eq + 1));
  }
  const srRaw = fields.get('sr');
  const sig = fields.get('sig');
  const se = fields.get('se');
  if (!srRaw) throw new SasError('token has no sr');
  if (!sig) throw new SasError('token has no sig');
  if (!se || !/^\d+$/.test(se)) throw new SasError('token has no valid se (expiry)');
  const skn = fields.get('skn');
  try {
    return {
      srRaw,
      seRaw: se,
      resource: decodeURIComponent(srRaw),
      signature: decodeURIComponent(sig),
      expiry: Number(se),
      keyName: skn === undefined ? undefined : decodeURIComponent(skn),
    };
  } catch {
    throw new SasError('token is not URL-encoded properly');
  }
}

function sign(key: string, srRaw: string, expiry: number | string): string {
  return createHmac('sha256', Buffer.from(key, 'base64')).update(`${srRaw}\n${expiry}`).digest('base64');
}

/** True when `token` was signed with one of `keys` (the signature covers sr exactly as sent, and se). */
export function signedWithOneOf(token: SasToken, keys: readonly string[]): boolean {
  const given = Buffer.from(token.signature, 'base64');
  return keys.some((key) => {
    if (!key) return false;
    const expected = Buffer.from(sign(key, token.srRaw, token.seRaw), 'base64');
    return expected.length === given.length && timingSafeEqual(expected, given);
  });
}

/**
 * Verifies signature and expiry; the caller checks the resource. The service SDK's
 * Registry.fromConnectionString puts milliseconds in se (a far-future expiry), which IoT Hub accepts.
 */
export function verifySasToken(token: SasToken, keys: readonly string[], nowSeconds = Date.now() / 1000): void {
  if (token.expiry <= nowSeconds) throw new SasError('token expired');
  if (!signedWithOneOf(token, keys)) throw new SasError('signature does not match the key');
}

/** Makes a token the way the Azure SDKs do (sr URL-encoded, sig URL-encoded). */
export function makeSasToken(resource: string, key: string, expiry: number, keyName?: string): string {
  const srRaw = encodeURIComponent(resource);
  const sig = encodeURIComponent(sign(key, srRaw, expiry));
  return `SharedAccessSignature sr=${srRaw}&sig=${sig}&se=${expiry}${keyName ? `&skn=${encodeURIComponent(keyName)}` : ''}`;
}
