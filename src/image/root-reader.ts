import { lstat, readFile, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { runTool } from './run-tool.js';

/**
 * Read access to a root file system, paths absolute inside it: a directory where it is mounted
 * (convert), or an ext4 file system inside an image read with debugfs (inspect: no root, no loop
 * device, no mount, nothing written).
 */
export interface RootReader {
  read(path: string): Promise<Buffer | undefined>;
  /** A symlink's target, or undefined when `path` is not a symlink. */
  readlink(path: string): Promise<string | undefined>;
  /** The names in a directory (empty when it does not exist). */
  list(dir: string): Promise<string[]>;
}

export async function readText(r: RootReader, path: string): Promise<string | undefined> {
  return (await r.read(path))?.toString('utf8');
}

export function dirReader(root: string): RootReader {
  return {
    read: (p) => readFile(join(root, p)).catch(() => undefined),
    readlink: async (p) => ((await lstat(join(root, p)).catch(() => undefined))?.isSymbolicLink() ? readlink(join(root, p)) : undefined),
    list: (d) => readdir(join(root, d)).catch(() => []),
  };
}

/** The ext4 file system at byte `offset` of `image`, read with debugfs (e2fsprogs). */
export function ext4Reader(image: string, offset: number): RootReader {
  const device = `${image}?offset=${offset}`;
  const debugfs = (request: string) => runTool('debugfs', ['-R', request, device], { allowFailure: true });
  // debugfs prints its banner and any lookup error on stderr, and exits 0 either way.
  const failed = (stderr: string) => /File not found|not found by|Ext2 inode is not a directory|Could not|Bad magic/i.test(stderr);
  return {
    async read(p) {
      const r = await debugfs(`cat "${p}"`);
      return r.code === 0 && !failed(r.stderr) ? r.stdout : undefined;
    },
    async readlink(p) {
      const r = await debugfs(`stat "${p}"`);
      if (r.code !== 0 || failed(r.stderr)) return undefined;
      const text = r.stdout.toString('utf8');
      if (!/Type: symlink/.test(text)) return undefined;
      const fast = /Fast link dest: "(.*)"/.exec(text);
      if (fast) return fast[1];
      return (await this.read(p))?.toString('utf8');
    },
    async list(d) {
      const r = await debugfs(`ls -p "${d}"`);
      if (r.code !== 0 || failed(r.stderr)) return [];
      // -p: /inode/mode/uid/gid/name/size/ per entry.
      return r.stdout
        .toString('utf8')
        .split('\n')
        .map((l) => l.split('/')[5])
        .filter((n): n is string => n !== undefined && n !== '' && n !== '.' && n !== '..');
    },
  };
}
