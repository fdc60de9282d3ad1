import type { Socket } from 'node:net';

/**
 * Reads a socket's bytes into the caller's own buffers. Made with `onread` (tls.connect's static
 * read buffer), TLS decrypts straight into the buffer the caller waits on: no Buffer is allocated
 * per read and no stream machinery runs per 16 KiB record, which halves the CPU of receiving a
 * large body and keeps memory flat (node's stream path leaves tens of MiB of short-lived read
 * buffers for the garbage collector). A socket without `onread` (a TLS socket over a proxy tunnel,
 * where node ignores the option) feeds the same reader from its 'data' events, with one copy.
 */
export class SocketReader {
  private target: Buffer | null = null;
  private filled = 0;
  private wanted = 0;
  private waiter: { resolve: (n: number) => void; reject: (err: Error) => void } | null = null;
  /** Bytes that arrived while nobody was reading (read before the socket pauses). */
  private spill: Buffer[] = [];
  private ended = false;
  private failure: Error | null = null;
  private socket: Socket | null = null;
  /** Bytes received so far, as they arrive. */
  bytesIn = 0;
  /** Where onread puts bytes that arrive with no read waiting: copied to `spill` at once. */
  private readonly scratch = Buffer.allocUnsafe(16 * 1024);

  /**
   * The `onread` option for tls.connect / net.connect: reads land in the waiting caller's buffer.
   * Node asks for the next read's buffer right after each read, so the first read after a pause
   * lands in `scratch` (while nobody waited) and is copied: one small copy per read() call.
   */
  readonly onread = {
    buffer: (): Buffer => (this.target && this.filled < this.target.length ? this.target.subarray(this.filled) : this.scratch),
    callback: (n: number, buf: Buffer): boolean => {
      this.bytesIn += Math.max(0, n);
      if (buf.buffer === this.scratch.buffer) return n > 0 ? this.pushed(Buffer.from(buf.subarray(0, n))) : this.waiter !== null;
      this.filled += n;
      return !this.settleIfDone();
    },
  };

  /** Attaches the socket (made with `onread`, or not: then its 'data' events are read). */
  attach(socket: Socket, usesOnread: boolean): void {
    this.socket = socket;
    if (!usesOnread) {
      socket.on('data', (piece: Buffer) => {
        this.bytesIn += piece.length;
        if (!this.pushed(piece)) socket.pause();
      });
    }
    socket.on('end', () => {
      this.ended = true;
      this.settle();
    });
    socket.on('error', (err: Error) => this.fail(err));
    socket.on('close', () => {
      if (!this.ended && !this.failure) this.fail(Object.assign(new Error('the connection closed'), { code: 'ECONNRESET' }));
    });
  }

  /**
   * Reads into `into` from its start until at least `atLeast` bytes (default: all of it) are there
   * or the connection ends; resolves with the count (fewer than `atLeast` only at the end).
   */
  read(into: Buffer, atLeast = into.length): Promise<number> {
    if (this.waiter) return Promise.reject(new Error('SocketReader: one read at a time'));
    if (this.failure) return Promise.reject(this.failure);
    let filled = 0;
    while (this.spill.length > 0 && filled < into.length) {
      const head = this.spill[0];
      const n = head.copy(into, filled);
      filled += n;
      if (n === head.length) this.spill.shift();
      else this.spill[0] = head.subarray(n);
    }
    if (filled >= Math.max(1, atLeast) || this.ended || into.length === 0) return Promise.resolve(filled);
    this.target = into;
    this.filled = filled;
    this.wanted = Math.max(1, atLeast);
    return new Promise<number>((resolve, reject) => {
      this.waiter = { resolve, reject };
      this.socket?.resume();
    });
  }

  /** Ends the connection; a waiting read fails with `err`. */
  destroy(err?: Error): void {
    if (err) this.fail(err);
    this.socket?.destroy(err);
  }

  /** Takes bytes that are not in the waiting read's buffer yet; false when reading should pause. */
  private pushed(piece: Buffer): boolean {
    if (!this.target) {
      this.spill.push(piece);
      return false;
    }
    const n = piece.copy(this.target, this.filled);
    this.filled += n;
    if (n < piece.length) this.spill.push(piece.subarray(n));
    return !this.settleIfDone();
  }

  /** Settles the waiting read once it has what it wanted; true if it did (the socket should pause). */
  private settleIfDone(): boolean {
    if (this.filled < this.wanted && this.filled < (this.target?.length ?? 0)) return false;
    this.settle();
    return true;
  }

  private settle(): void {
    const waiter = this.waiter;
    if (!waiter) return;
    const n = this.filled;
    this.waiter = null;
    this.target = null;
    this.filled = 0;
    waiter.resolve(n);
  }

  private fail(err: Error): void {
    if (!this.failure) this.failure = err;
    const waiter = this.waiter;
    if (!waiter) return;
    this.waiter = null;
    this.target = null;
    waiter.reject(this.failure);
  }
}
