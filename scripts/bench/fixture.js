// What the install benchmark runs against: a random image in an uncompressed signed bundle, served
// over HTTPS on loopback by a separate process, and a slot partition on a loop device (a file when
// not root).
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { open, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createBundle, generateKeyPair } from '../../dist/bundle/index.js';
import { ensureCertificates } from '../../dist/hub-emulator/certificates.js';

const MiB = 1024 * 1024;

export async function writeRandomImage(path, size) {
  const fh = await open(path, 'w');
  const piece = 16 * MiB;
  for (let at = 0; at < size; at += piece) await fh.write(randomBytes(Math.min(piece, size - at)));
  await fh.close();
}

export async function makeBundle(dir, image, compression = 'none') {
  const key = generateKeyPair();
  const bundle = join(dir, `fw-${compression}.piota`);
  // Format 1: a full install reads the same header and chunks from a format 2 bundle and stops
  // there, and format 2's unit store would take minutes to build for a 4 GiB random image.
  await createBundle({ out: bundle, version: '1', compatible: ['bench'], payloads: [{ name: 'rootfs', file: image }], compression, formatVersion: 1, signingKeys: [key.privateKeyPem] });
  await writeFile(join(dir, 'trusted.pub'), key.publicKeyPem);
  return { bundle, publicKeyPem: key.publicKeyPem, size: (await stat(bundle)).size };
}

/** An HTTPS file server in its own process (its TLS work is not charged to the device). */
export async function serveDirectory(dir) {
  const certs = await ensureCertificates(join(dir, 'tls'), 'localhost');
  await writeFile(join(dir, 'server.key'), certs.serverKeyPem);
  await writeFile(join(dir, 'server.pem'), certs.serverCertPem);
  await writeFile(join(dir, 'ca.pem'), certs.caPem);
  const server = spawn(process.execPath, ['--input-type=module', '-e', `
    import { createServer } from 'node:https';
    import { createReadStream, readFileSync, statSync } from 'node:fs';
    const dir = ${JSON.stringify(dir)};
    const s = createServer({ key: readFileSync(dir + '/server.key'), cert: readFileSync(dir + '/server.pem') }, (req, res) => {
      const file = dir + '/' + decodeURIComponent(new URL(req.url, 'https://x').pathname.slice(1));
      let size;
      try { size = statSync(file).size; } catch { res.writeHead(404).end(); return; }
      const m = /^bytes=(\\d+)-$/.exec(req.headers.range ?? '');
      const start = m ? Number(m[1]) : 0;
      res.writeHead(m ? 206 : 200, { 'Content-Length': size - start, ...(m ? { 'Content-Range': 'bytes ' + start + '-' + (size - 1) + '/' + size } : {}) });
      const bps = Number(new URL(req.url, 'https://x').searchParams.get('bps') ?? 0);
      const body = createReadStream(file, { start, highWaterMark: bps ? 16384 : 1024 * 1024 });
      if (!bps) return void body.pipe(res);
      // ?bps=N: a slow server (an update that stays in progress while the bench calls the method).
      body.on('data', (piece) => { body.pause(); res.write(piece); setTimeout(() => body.resume(), (piece.length / bps) * 1000); });
      body.on('end', () => res.end());
      res.on('close', () => body.destroy());
    });
    s.listen(0, '127.0.0.1', () => console.log(s.address().port));
    // Ends with the bench, even one that crashed: its stdin closes then.
    process.stdin.on('end', () => process.exit(0)).resume();
  `], { stdio: ['pipe', 'pipe', 'inherit'] });
  const port = await new Promise((resolve, reject) => {
    server.once('exit', (code) => reject(new Error(`the bench's HTTPS server exited ${code}`)));
    server.stdout.once('data', (d) => resolve(Number(String(d).trim())));
  });
  return { port, ca: join(dir, 'ca.pem'), stop: () => server.kill() };
}

/** A slot: a loop device over a file as root (what a Pi's partition looks like to the writer), else the file. */
export async function makeSlot(dir, size) {
  const file = join(dir, 'slot-rootfs');
  await (await open(file, 'w')).close();
  await truncate(file, size);
  if (process.getuid?.() === 0) {
    try {
      const dev = execFileSync('losetup', ['--find', '--show', file], { encoding: 'utf8' }).trim();
      return { path: dev, kind: 'loop device', release: () => execFileSync('losetup', ['-d', dev]) };
    } catch {
      // No loop devices here (a container without them): the file itself is the slot.
    }
  }
  return { path: file, kind: 'file', release: () => undefined };
}

export function hasTool(name) {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
