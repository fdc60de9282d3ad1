import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** The daemon config piota's package installs. */
export const IMAGE_CONFIG = '/etc/piota/config.json';
/** The kernel's own device-tree path; /proc/device-tree is a symlink to it on a Pi. */
export const SYS_DEVICE_TREE = '/sys/firmware/devicetree/base/chosen/bootloader';
const PROC_DEVICE_TREE = '/proc/device-tree/';
const SYS_DEVICE_TREE_BASE = '/sys/firmware/devicetree/base/';

/**
 * The one config key the rig may override. A container's /proc has no device-tree entry and none
 * can be made there (a bind into /proc fails), while /sys/firmware can be given one: a config that
 * reads the device tree under /proc/device-tree gets, for this boot only, a copy of itself with
 * boot.deviceTreeDir moved to the same place under /sys/firmware/devicetree/base, bound over
 * /etc/piota/config.json (the image is not written). Returns the copy's path, or undefined when
 * the config already reads /sys or leaves the key out (piota's default is the /sys path), or there
 * is no config to fix (the boot shows what is wrong).
 */
export async function deviceTreeOverride(root: string, rigDir: string): Promise<string | undefined> {
  let config: { boot?: { deviceTreeDir?: unknown } };
  try {
    config = JSON.parse(await readFile(join(root, IMAGE_CONFIG), 'utf8')) as typeof config;
  } catch {
    return undefined;
  }
  if (typeof config !== 'object' || config === null || typeof config.boot !== 'object' || config.boot === null) return undefined;
  const dir = config.boot.deviceTreeDir;
  if (typeof dir !== 'string' || !dir.startsWith(PROC_DEVICE_TREE)) return undefined;
  config.boot.deviceTreeDir = SYS_DEVICE_TREE_BASE + dir.slice(PROC_DEVICE_TREE.length);
  const copy = join(rigDir, 'config.json');
  await writeFile(copy, JSON.stringify(config, null, 2) + '\n', { mode: 0o644 });
  return copy;
}
