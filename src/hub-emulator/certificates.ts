import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import forge from 'node-forge';
import { writeFileDurably } from '../os/durable-file.js';

/** The emulator's TLS material: its own CA (handed to clients) and a server certificate it signed. */
export interface HubCertificates {
  caFile: string;
  caPem: string;
  serverCertPem: string;
  serverKeyPem: string;
}

const CA_NAME = 'piota hub emulator CA';

function newRsaKey(): forge.pki.rsa.PrivateKey {
  // node:crypto makes the key in native code (milliseconds); forge alone takes seconds.
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return forge.pki.privateKeyFromPem(privateKey.export({ type: 'pkcs1', format: 'pem' }).toString());
}

function publicOf(key: forge.pki.rsa.PrivateKey): forge.pki.rsa.PublicKey {
  return forge.pki.setRsaPublicKey(key.n, key.e);
}

function serialNumber(): string {
  // Positive (high bit clear) and unique: two certificates from one CA must never share a serial.
  const bytes = randomBytes(16);
  bytes[0] &= 0x7f;
  return bytes.toString('hex');
}

function validity(cert: forge.pki.Certificate, years: number): void {
  const from = new Date(Date.now() - 24 * 3600 * 1000); // a Pi whose clock lags a little still accepts it
  const to = new Date(from);
  to.setFullYear(to.getFullYear() + years);
  cert.validity.notBefore = from;
  cert.validity.notAfter = to;
}

function makeCa(): { cert: forge.pki.Certificate; key: forge.pki.rsa.PrivateKey } {
  const key = newRsaKey();
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicOf(key);
  cert.serialNumber = serialNumber();
  validity(cert, 10);
  const subject = [{ name: 'commonName', value: CA_NAME }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(key, forge.md.sha256.create());
  return { cert, key };
}

/** The names a server certificate must carry: the configured host plus the loopback names. */
export function serverNames(host: string): string[] {
  return [...new Set([host, 'localhost', '127.0.0.1', '::1'])];
}

function makeServerCert(ca: { cert: forge.pki.Certificate; key: forge.pki.rsa.PrivateKey }, names: string[]) {
  const key = newRsaKey();
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicOf(key);
  cert.serialNumber = serialNumber();
  validity(cert, 5);
  cert.setSubject([{ name: 'commonName', value: names[0] }]);
  cert.setIssuer(ca.cert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: names.map((n) => (isIP(n) ? { type: 7, ip: n } : { type: 2, value: n })) },
  ]);
  cert.sign(ca.key, forge.md.sha256.create());
  return { cert, key };
}

async function readIfPresent(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function coversAll(certPem: string, names: string[]): boolean {
  const cert = forge.pki.certificateFromPem(certPem);
  const san = cert.getExtension('subjectAltName') as { altNames?: { type: number; value?: string; ip?: string }[] } | null;
  const have = new Set((san?.altNames ?? []).map((a) => (a.type === 7 ? a.ip : a.value)));
  return names.every((n) => have.has(n)) && cert.validity.notAfter.getTime() > Date.now() + 24 * 3600 * 1000;
}

/**
 * Loads the CA and server certificate from DIR/tls, making them on first start. The CA is kept
 * for the life of DIR (devices trust it); the server certificate is remade when the host changes.
 */
export async function ensureCertificates(dir: string, host: string): Promise<HubCertificates> {
  const tls = join(dir, 'tls');
  const files = {
    ca: join(tls, 'ca.pem'),
    caKey: join(tls, 'ca.key'),
    cert: join(tls, 'server.pem'),
    key: join(tls, 'server.key'),
  };
  const names = serverNames(host);
  let caPem = await readIfPresent(files.ca);
  let caKeyPem = await readIfPresent(files.caKey);
  let ca: { cert: forge.pki.Certificate; key: forge.pki.rsa.PrivateKey };
  if (caPem && caKeyPem) {
    ca = { cert: forge.pki.certificateFromPem(caPem), key: forge.pki.privateKeyFromPem(caKeyPem) };
  } else {
    ca = makeCa();
    caPem = forge.pki.certificateToPem(ca.cert);
    caKeyPem = forge.pki.privateKeyToPem(ca.key);
    await writeFileDurably(files.caKey, caKeyPem, { mode: 0o600, mkdirs: true });
    await writeFileDurably(files.ca, caPem);
  }
  let serverCertPem = await readIfPresent(files.cert);
  let serverKeyPem = await readIfPresent(files.key);
  if (!serverCertPem || !serverKeyPem || !coversAll(serverCertPem, names) || !issuedBy(serverCertPem, ca.cert)) {
    const server = makeServerCert(ca, names);
    serverCertPem = forge.pki.certificateToPem(server.cert);
    serverKeyPem = forge.pki.privateKeyToPem(server.key);
    await writeFileDurably(files.key, serverKeyPem, { mode: 0o600, mkdirs: true });
    await writeFileDurably(files.cert, serverCertPem);
  }
  return { caFile: files.ca, caPem, serverCertPem, serverKeyPem };
}

function issuedBy(certPem: string, ca: forge.pki.Certificate): boolean {
  try {
    return ca.verify(forge.pki.certificateFromPem(certPem));
  } catch {
    return false;
  }
}
