import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBundle } from '../../src/bundle/create.js';
import { startTestFileServer, type TestFileServer } from '../helpers/https-file-server.js';
import type { ReleasePair } from './synthetic.js';

export interface ServedRelease {
  /** A new temporary directory holding r2.img and r2.piota; the tests put their slots there too. */
  dir: string;
  /** Serves r2.piota over HTTPS (loopback). */
  server: TestFileServer;
  /** Stops the server and removes `dir`. */
  close(): Promise<void>;
}

/**
 * `pair.release2` as the bundle the adaptive tests install: format 2, 64 KiB chunks, signed with
 * `privateKeyPem`, for model 'pi', version '2', served as 'r2.piota'.
 */
export async function serveRelease2(prefix: string, pair: ReleasePair, privateKeyPem: string): Promise<ServedRelease> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const server = await startTestFileServer();
  await writeFile(join(dir, 'r2.img'), pair.release2);
  await createBundle({
    out: join(dir, 'r2.piota'), version: '2', compatible: ['pi'], formatVersion: 2, chunkSize: 64 * 1024,
    payloads: [{ name: 'rootfs', file: join(dir, 'r2.img') }], signingKeys: [privateKeyPem],
  });
  server.add('r2.piota', join(dir, 'r2.piota'));
  return {
    dir,
    server,
    close: async () => {
      await server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
