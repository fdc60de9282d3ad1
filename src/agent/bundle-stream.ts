import { ByteReader } from '../bundle/byte-reader.js';
import { DownloadError } from '../download/errors.js';
import { piecesOf } from '../download/pieces.js';
import type { DownloadRequest, DownloadResponse } from '../download/https-source.js';
import type { HttpSource } from './workflow/context.js';
import { redactUri } from './redact-uri.js';

/** What the first request asks for: the header of any bundle of a few GiB fits (4 GiB in 4 MiB chunks: about 150 KiB of manifest; more is fetched). */
export const FIRST_REQUEST_BYTES = 64 * 1024;

/**
 * A bundle read from byte 0 as one stream, over as many HTTP requests as it takes to send only the
 * bytes the install needs. The first asks for the first FIRST_REQUEST_BYTES (the header); once the
 * download knows where the bytes it needs end (`endAt`: the header's end while it reads the header,
 * then the last chunk's end for a full install), reading past the first response asks for exactly
 * the bytes up to there, with If-Range, so a format 2 bundle's unit store is never sent to a device
 * that installs in full, and an adaptive install pays for no body it abandons. `seekTo` moves a
 * resumed download to its chunk.
 *
 * A server that ignores Range answers the first request with the whole file: the stream then reads
 * that response alone, as a plain GET would (and stops reading at `endAt`).
 */
export class BundleStream {
  private current: { response: DownloadResponse; reader: ByteReader } | null = null;
  /** Where the current response's next byte is in the file. */
  private position = 0;
  /** Bytes the current response has left (Infinity for a response to the file's end). */
  private left = Infinity;
  /** No read goes past this byte: the one `endAt` gave, or the file's end once a response showed it. */
  private end = Infinity;
  /** Set by destroy(): every later read is empty. */
  private destroyed = false;
  /** The first response: its size, validator and whether the server honoured Range. */
  first!: DownloadResponse;

  constructor(
    private readonly open: HttpSource,
    private readonly request: Omit<DownloadRequest, 'start' | 'end' | 'ifRange' | 'expectedTotal'>,
    /** Bytes of the first request; undefined: the whole file in one request (a pinned download hashes it all). */
    private readonly firstBytes: number | undefined,
  ) {}

  /** Sends the first request. */
  async start(): Promise<DownloadResponse> {
    this.first = await this.open({ ...this.request, start: 0, ...(this.firstBytes === undefined ? {} : { end: this.firstBytes }) });
    this.current = { response: this.first, reader: new ByteReader(this.first.body) };
    // 206: the server sent bytes 0..firstBytes-1 (the whole file when it is shorter); 200: all of it.
    this.left = this.first.partial && this.firstBytes !== undefined ? this.firstBytes : Infinity;
    return this.first;
  }

  /** Reads stop at byte `end` of the file: later requests ask for no byte past it. */
  endAt(end: number): void {
    this.end = end;
  }

  /** The next read starts at byte `offset` (a resume): the current response is dropped unless it is already there. */
  seekTo(offset: number): void {
    if (offset === this.position) return;
    this.drop();
    this.position = offset;
  }

  /** Fills `into` from its start; resolves with the count, less than into.length only at the end (endAt, or the file's). */
  async readInto(into: Buffer): Promise<number> {
    let filled = 0;
    while (!this.destroyed && filled < into.length && this.position < this.end) {
      if (!this.current) await this.continueAt(this.position);
      const want = Math.min(into.length - filled, this.end - this.position, this.left);
      const n = await this.current!.reader.fill(into.subarray(filled, filled + want));
      filled += n;
      this.position += n;
      this.left -= n;
      if (n < want) {
        // The response reached its declared end before what was asked: the file ends there.
        this.drop();
        this.end = this.position;
        break;
      }
      if (this.left === 0) this.drop(); // a ranged response done: the next read continues
    }
    return filled;
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return piecesOf((into) => this.readInto(into), () => this.destroy());
  }

  destroy(): void {
    this.destroyed = true;
    this.drop();
  }

  /** The validator of the file as first fetched (for If-Range, and the adaptive download's ranges). */
  get validator(): string | null {
    return this.first.validator;
  }

  private drop(): void {
    this.current?.response.destroy();
    this.current = null;
    this.left = Infinity;
  }

  /** Asks for bytes offset..end-1 of the file as first fetched. */
  private async continueAt(offset: number): Promise<void> {
    const response = await this.open({
      ...this.request,
      start: offset,
      ...(this.end === Infinity ? {} : { end: this.end }),
      ifRange: this.first.validator ?? undefined,
      expectedTotal: this.first.totalSize ?? undefined,
    });
    if (response.restartedFromZero) {
      response.destroy();
      throw new DownloadError('fileChanged', `${redactUri(this.request.url)} changed on the server while it was read; starting again from its header`, true);
    }
    this.current = { response, reader: new ByteReader(response.body) };
    this.left = this.end === Infinity ? Infinity : this.end - offset;
  }
}
