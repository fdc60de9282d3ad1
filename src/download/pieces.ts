const PIECE_BYTES = 64 * 1024;

/**
 * Iterates a source that fills buffers (`read`: resolves with the count, less than asked only at
 * its end) in fresh pieces of 64 KiB, for callers that keep what they get. Stopping early (or never
 * starting) calls `close`.
 */
export function piecesOf(read: (into: Buffer) => Promise<number>, close: () => void): AsyncIterator<Buffer> {
  return {
    next: async () => {
      const piece = Buffer.allocUnsafe(PIECE_BYTES);
      const n = await read(piece);
      return n === 0 ? { done: true, value: undefined } : { done: false, value: n < piece.length ? piece.subarray(0, n) : piece };
    },
    return: async () => {
      close();
      return { done: true, value: undefined };
    },
  };
}
