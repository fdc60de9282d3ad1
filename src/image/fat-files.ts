import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runTool } from './run-tool.js';

/**
 * Files on a FAT partition inside an image, through mtools: no mount (this kernel may have no vfat
 * driver) and no root needed. `offset` is the partition's byte offset in `image`.
 */
export interface FatVolume {
  image: string;
  offset: number;
}

const target = (v: FatVolume) => `${v.image}@@${v.offset}`;
// mtools refuses some valid volumes over geometry it does not need; the files are what matter.
const env = { ...process.env, MTOOLS_SKIP_CHECK: '1' };

/** The file's bytes, or undefined when it is not there. */
export async function readFat(v: FatVolume, name: string): Promise<Buffer | undefined> {
  const r = await runTool('mtype', ['-i', target(v), `::/${name}`], { env, allowFailure: true });
  return r.code === 0 ? r.stdout : undefined;
}

/** The names in the volume's top directory. */
export async function listFat(v: FatVolume): Promise<string[]> {
  const r = await runTool('mdir', ['-b', '-i', target(v), '::/'], { env });
  return r.stdout
    .toString('utf8')
    .split('\n')
    .map((l) => l.trim().replace(/^::\//, ''))
    .filter(Boolean);
}

/** Writes (or replaces) a file in the volume's top directory. */
export async function writeFat(v: FatVolume, name: string, data: string | Buffer): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'piota-fat-'));
  try {
    await writeFile(join(dir, 'f'), data);
    await runTool('mcopy', ['-o', '-i', target(v), join(dir, 'f'), `::/${name}`], { env });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
