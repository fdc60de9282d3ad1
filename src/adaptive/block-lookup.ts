
/**
 * Finds a block of a slot by its lookup key: an open-addressing hash table in one Int32Array over
 * the slot index's key bytes, so a million blocks cost a few MiB and no JS object each.
 * Keys are compared on their first min(asked key length, stored key length) bytes.
 */
export class BlockLookup {
  private readonly table: Int32Array;
  private readonly mask: number;

  /**
   * `preferLast`: where a key occurs more than once, keep its last block. The target slot wants
   * that: the installer may only read target blocks at or after the chunk it writes.
   */
  constructor(
    /** blockCount × keyBytes. */
    private readonly keys: Uint8Array,
    private readonly keyBytes: number,
    preferLast = false,
  ) {
    const count = keys.length / keyBytes;
    let capacity = 1024;
    while (capacity < count * 2) capacity *= 2;
    this.table = new Int32Array(capacity).fill(-1);
    this.mask = capacity - 1;
    for (let i = 0; i < count; i++) {
      const slot = this.probe(keys, i * keyBytes, keyBytes);
      if (this.table[slot] === -1 || preferLast) this.table[slot] = i;
    }
  }

  /** The block holding `key` (the slot's block number), or -1. */
  find(key: Uint8Array): number {
    return this.table[this.probe(key, 0, Math.min(key.length, this.keyBytes))];
  }

  /** The table slot of a key: where it is, or the empty slot where it would go. */
  private probe(bytes: Uint8Array, at: number, n: number): number {
    const keys = this.keys;
    let slot = ((bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3]) & this.mask;
    for (;;) {
      const block = this.table[slot];
      if (block === -1) return slot;
      const other = block * this.keyBytes;
      let same = true;
      for (let k = 0; k < n; k++) {
        if (keys[other + k] !== bytes[at + k]) {
          same = false;
          break;
        }
      }
      if (same) return slot;
      slot = (slot + 1) & this.mask;
    }
  }
}
