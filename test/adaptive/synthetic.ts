import { seeded } from '../helpers/seeded-random.js';

/*
 * A small synthetic pair of root images of the release pair's shape (docs/adaptive-updates.md):
 * 4 KiB-aligned "files" of compressible bytes, free space of zeros, metadata blocks. Release 2
 * keeps release 1's files where they were, adds new files in free space, rewrites a few metadata
 * blocks (hostname, motd, package lists) and moves one file.
 */
export const BLOCK = 4096;

function fileBlock(random: () => number, out: Buffer, at: number): void {
  // Text-like bytes: a small alphabet with runs, so it compresses about 3:1 like binaries and text do.
  const words = ['lib', 'systemd', 'usr/', 'share', 'node', 'dbus', '\0\0\0\0', 'ELF', ' = ', '\n'];
  let i = at;
  while (i < at + BLOCK) {
    const w = random() < 0.2 ? String.fromCharCode(33 + Math.floor(random() * 90)) : words[Math.floor(random() * words.length)];
    i += out.write(w, i, Math.min(w.length, at + BLOCK - i), 'latin1');
  }
}

export interface ReleasePair {
  release1: Buffer;
  release2: Buffer;
  /** A third image, the release before release 1 (what the target slot often holds). */
  release0: Buffer;
}

export function syntheticPair(blocks = 768, seed = 7): ReleasePair {
  const random = seeded(seed);
  const size = blocks * BLOCK;
  const r1 = Buffer.alloc(size);
  const used = Math.floor(blocks * 0.55);
  for (let b = 8; b < used; b++) fileBlock(random, r1, b * BLOCK);
  for (let b = 0; b < 8; b++) fileBlock(random, r1, b * BLOCK); // superblock, group descriptors

  const r2 = Buffer.from(r1);
  // New files (curl and its libraries) in free space: about 6 % of the image.
  const added = Math.floor(blocks * 0.06);
  for (let b = used; b < used + added; b++) fileBlock(random, r2, b * BLOCK);
  // Metadata that changes: bitmaps, inode tables, /etc/hostname, /etc/motd, dpkg status.
  for (const b of [1, 2, 3, 40, 41, 100]) fileBlock(random, r2, b * BLOCK);
  // A file rewritten elsewhere (dpkg writes a new copy and renames it): same bytes, new place.
  r1.copy(r2, (used + added) * BLOCK, 200 * BLOCK, 216 * BLOCK);
  r2.fill(0, 200 * BLOCK, 216 * BLOCK);

  const r0 = Buffer.from(r1);
  for (let b = 300; b < 340; b++) fileBlock(random, r0, b * BLOCK);
  return { release0: r0, release1: r1, release2: r2 };
}
