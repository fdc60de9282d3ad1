import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { runHost } from './host-command.js';

/**
 * The FAT bootconfig partition as a directory. This machine's kernel has no vfat driver, so the
 * partition cannot be mounted, on the host or in the container. The rig copies its files into a
 * directory before each boot (mtools, which reads the partition's loop device), binds that
 * directory at /boot/bootconfig, and writes the files back into the partition when the boot ends,
 * however it ends (reboot, power-off or power cut): what piota wrote there durably is on the
 * partition, as on a Pi. Flat: the bootconfig partition holds files at its root only.
 */
export async function copyFatToDirectory(device: string, dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o755 });
  for (const name of await listFat(device)) {
    await runHost('mcopy', ['-n', '-m', '-i', device, `::/${name}`, join(dir, name)]);
  }
}

/** Writes `dir`'s files back into the partition: changed and new files copied, removed ones deleted. */
export async function copyDirectoryToFat(dir: string, device: string): Promise<void> {
  const onFat = new Set(await listFat(device));
  for (const name of await readdir(dir)) {
    const path = join(dir, name);
    if (!(await stat(path)).isFile()) continue;
    if (onFat.has(name) && (await sameAsFat(device, name, path))) {
      onFat.delete(name);
      continue;
    }
    await runHost('mcopy', ['-o', '-m', '-i', device, path, `::/${name}`]);
    onFat.delete(name);
  }
  for (const gone of onFat) await runHost('mdel', ['-i', device, `::/${gone}`]);
}

async function sameAsFat(device: string, name: string, path: string): Promise<boolean> {
  const fat = await runHost('mtype', ['-i', device, `::/${name}`]).catch(() => undefined);
  return fat !== undefined && fat === (await readFile(path, 'utf8'));
}

/** The names of the regular files at the partition's root. */
export async function listFat(device: string): Promise<string[]> {
  const out = await runHost('mdir', ['-b', '-i', device, '::/']).catch((err: Error) => {
    if (/no files|File not found/i.test(err.message)) return '';
    throw err;
  });
  return out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.endsWith('/'))
    .map((l) => l.replace(/^::\//, ''));
}

/** Puts one file on the partition (what a user does from a laptop after flashing). */
export async function putFileOnFat(device: string, name: string, source: string): Promise<void> {
  await runHost('mcopy', ['-o', '-i', device, source, `::/${name}`]);
}
