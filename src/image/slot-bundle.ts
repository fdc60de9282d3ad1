import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { createBundle, type CreatedBundle } from '../bundle/create.js';
import { copyRange } from './byte-copy.js';
import { ImageError } from './image-error.js';
import { inspectImage } from './inspect.js';
import { SLOTS, type SlotName } from './layout.js';

export interface SlotBundleOptions {
  image: string;
  slot: SlotName;
  out: string;
  /** The bundle's version; must equal the slot's /etc/piota-release when the slot has one. */
  version?: string;
  signingKeys: string[];
  securityVersion?: number;
  /** Default: the model in the slot's /etc/piota/config.json. */
  compatible?: string[];
}

/**
 * The signed bundle of one slot of an A/B image: its boot partition as payload `boot` and its root
 * partition as `rootfs`, byte for byte, so what is flashed and what updates it come from one build.
 * The partitions are copied to sparse files beside the bundle (the bundle format reads files) and
 * removed afterwards. Refuses an image that `inspect` finds problems in.
 */
export async function bundleSlot(o: SlotBundleOptions): Promise<CreatedBundle> {
  const report = await inspectImage(o.image);
  if (report.problems.length > 0) {
    throw new ImageError('refused', `${o.image}: not a clean A/B image (piota image inspect): ${report.problems.join('; ')}`);
  }
  const slot = report.slots[o.slot]!;
  const version = o.version ?? slot.release ?? undefined;
  if (version === undefined) throw new ImageError('refused', `slot ${o.slot} has no /etc/piota-release: give --version`);
  if (slot.release !== null && version !== slot.release) {
    throw new ImageError('refused', `--version ${version}, but slot ${o.slot}'s /etc/piota-release says ${slot.release}: the device would report ${slot.release} after this update`);
  }
  const model = typeof report.config?.model === 'string' ? report.config.model : undefined;
  const compatible = o.compatible?.length ? o.compatible : model ? [model] : [];
  if (compatible.length === 0) throw new ImageError('refused', 'no model in the image\'s config: give --compatible');

  const part = (n: number) => report.partitions.find((p) => p.number === n)!;
  const work = await mkdtemp(join(dirname(resolve(o.out)), '.piota-image-bundle-'));
  try {
    const payloads = [];
    for (const [name, n] of [['boot', SLOTS[o.slot].boot], ['rootfs', SLOTS[o.slot].root]] as const) {
      const file = join(work, name);
      const p = part(n);
      await writeFile(file, '');
      await truncate(file, p.size);
      await copyRange(o.image, p.start, file, 0, p.size);
      payloads.push({ name, file });
    }
    return await createBundle({ out: o.out, version, compatible, payloads, securityVersion: o.securityVersion ?? 0, signingKeys: o.signingKeys });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
