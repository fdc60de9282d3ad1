/**
 * A source that can also fill the caller's buffer itself (an HTTPS body read straight into it):
 * `readInto` resolves with the count, less than into.length only at the source's end.
 */
export interface FillableSource extends AsyncIterable<Uint8Array> {
  readInto?(into: Buffer): Promise<number>;
}

/** A stream of bytes whose `return()` always releases its source. */
export interface ByteStream extends AsyncIterableIterator<Buffer> {
  return(): Promise<IteratorResult<Buffer, undefined>>;
  readInto(into: Buffer): Promise<number>;
}

/**
 * Reads exact byte counts from an async stream of arbitrary pieces (an HTTP response, a file
 * stream) without holding more than the caller asks for plus one piece.
 */
export class ByteReader {
  private readonly iterator: AsyncIterator<Uint8Array>;
  private readonly readInto: ((into: Buffer) => Promise<number>) | undefined;
  private pending: Buffer = Buffer.alloc(0);
  private ended = false;
  private closed = false;
  /** Bytes handed out so far (the stream position, counted from where the source began). */
  position = 0;

  constructor(source: FillableSource) {
    this.iterator = source[Symbol.asyncIterator]();
    this.readInto = source.readInto?.bind(source);
  }

  private async pull(): Promise<boolean> {
    if (this.ended) return false;
    for (;;) {
      const next = await this.iterator.next();
      if (next.done) {
        this.ended = true;
        return false;
      }
      const piece = next.value;
      if (piece.length === 0) continue;
      this.pending = Buffer.isBuffer(piece) ? piece : Buffer.from(piece.buffer, piece.byteOffset, piece.length);
      return true;
    }
  }

  /**
   * Fills `target` completely (calling `onBytes` with each piece as it lands, e.g. to hash it),
   * and returns the number of bytes filled: less than target.length only when the stream ended.
   */
  async fill(target: Buffer, onBytes?: (piece: Buffer) => void): Promise<number> {
    let filled = 0;
    while (filled < target.length) {
      if (this.pending.length === 0 && this.readInto && !this.ended) {
        // The source fills the target itself: no piece to copy.
        const n = await this.readInto(target.subarray(filled));
        onBytes?.(target.subarray(filled, filled + n));
        filled += n;
        if (filled < target.length) this.ended = true;
        break;
      }
      if (this.pending.length === 0 && !(await this.pull())) break;
      const n = Math.min(this.pending.length, target.length - filled);
      const piece = this.pending.subarray(0, n);
      piece.copy(target, filled);
      onBytes?.(piece);
      this.pending = this.pending.subarray(n);
      filled += n;
    }
    this.position += filled;
    return filled;
  }

  /** True when the stream has no byte left (waits for the source to say so). */
  async atEnd(): Promise<boolean> {
    return this.pending.length === 0 && !(await this.pull());
  }

  /**
   * The unread rest of the stream. Its `return()` closes the source even if it was never read
   * (a plain async generator that has not started would skip its cleanup).
   */
  rest(): ByteStream {
    const stream: ByteStream = {
      next: async () => {
        if (this.pending.length === 0 && !(await this.pull())) return { done: true, value: undefined };
        const piece = this.pending;
        this.pending = Buffer.alloc(0);
        this.position += piece.length;
        return { done: false, value: piece };
      },
      return: async () => {
        await this.close();
        return { done: true, value: undefined };
      },
      readInto: (into) => this.fill(into),
      [Symbol.asyncIterator]: () => stream,
    };
    return stream;
  }

  /** Stops reading: lets the source release its resources (closes a file, aborts a download). */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.ended = true;
      await this.iterator.return?.();
    }
  }
}

/** `head`, then `rest`: a stream that gives back bytes already read from it (a peek at its start). */
export function prepend(head: Buffer, rest: ByteStream): ByteStream {
  let pending = head;
  const stream: ByteStream = {
    next: async () => {
      if (pending.length === 0) return rest.next();
      const piece = pending;
      pending = Buffer.alloc(0);
      return { done: false, value: piece };
    },
    return: () => rest.return(),
    readInto: async (into) => {
      const n = pending.copy(into);
      pending = pending.subarray(n);
      return n === into.length ? n : n + (await rest.readInto(into.subarray(n)));
    },
    [Symbol.asyncIterator]: () => stream,
  };
  return stream;
}
