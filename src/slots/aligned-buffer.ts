// The lib settings (ES2023, no DOM) leave out WebAssembly's types; Node has the global.
declare const WebAssembly: {
  Memory: new (descriptor: { initial: number; maximum?: number; shared?: boolean }) => { buffer: ArrayBuffer | SharedArrayBuffer };
};

/** O_DIRECT wants addresses, offsets and lengths in whole logical blocks; a page covers 512 and 4096. */
export const ALIGN = 4096;
const WASM_PAGE = 65536;

/** ArrayBuffers whose first byte is page aligned (Node gives no way to ask a Buffer its address). */
const alignedStores = new WeakSet<ArrayBuffer | SharedArrayBuffer>();

/**
 * A buffer of at least `size` bytes whose first byte is page aligned, as O_DIRECT requires. A
 * WebAssembly.Memory is allocated with mmap, so it starts on a page; Buffer.alloc gives no such
 * promise. Its pages are zeroed and touched only when used. `shared`: over a SharedArrayBuffer, which
 * a worker thread can read without a copy (HashWorker).
 */
export function allocAligned(size: number, shared = false): Buffer {
  const pages = Math.max(1, Math.ceil(size / WASM_PAGE));
  const store = new WebAssembly.Memory({ initial: pages, maximum: pages, shared }).buffer;
  alignedStores.add(store);
  return Buffer.from(store, 0, size);
}

/** True when `data` starts on a page that O_DIRECT can transfer from (a view made by allocAligned). */
export function isAligned(data: Uint8Array): boolean {
  return alignedStores.has(data.buffer) && data.byteOffset % ALIGN === 0;
}

/**
 * A free list of aligned buffers of one size, reused chunk after chunk so an install of any size
 * holds the same few buffers (flat memory, no garbage of megabytes for the collector). It holds
 * only what its users hand back: how many exist at once is bounded by how many chunks are in flight.
 */
export class AlignedBufferPool {
  private readonly free: Buffer[] = [];
  /** A view handed out → the whole buffer it came from. */
  private readonly owners = new WeakMap<Buffer, Buffer>();
  /** Buffers made so far (the pool's high-water mark, for tests and benchmarks). */
  allocated = 0;

  /** `shared`: buffers over SharedArrayBuffers, for a worker to hash in place. */
  constructor(
    readonly bufferSize: number,
    private readonly shared = false,
  ) {}

  /** A view of `size` bytes (at most bufferSize) at the start of a free aligned buffer. */
  take(size: number): Buffer {
    if (size > this.bufferSize) return Buffer.allocUnsafe(size);
    let whole = this.free.pop();
    if (!whole) {
      whole = allocAligned(this.bufferSize, this.shared);
      this.allocated += 1;
    }
    const view = whole.subarray(0, size);
    this.owners.set(view, whole);
    return view;
  }

  /** Hands a view from take() back; anything else is left to the garbage collector. */
  give(view: Buffer): void {
    const whole = this.owners.get(view);
    if (!whole) return;
    this.owners.delete(view);
    this.free.push(whole);
  }
}
