import { Duplex } from 'node:stream';
import { TELEMETRY_LIMIT } from './device-protocol.js';

/**
 * Bytes a connection may send before its CONNECT is accepted. A device's CONNECT (client id,
 * username with the SDK's version string, a SAS token) is well under 1 KB; IoT Hub refuses one of
 * more than a few KB. Without this cap the MQTT parser buffers whatever length a stranger announces.
 */
export const PRE_CONNECT_LIMIT = 8 * 1024;

/**
 * The largest MQTT packet (its remaining length) from an authenticated device: IoT Hub's 256 KB
 * message limit plus room for the topic and its property bag. The payload itself is checked
 * against TELEMETRY_LIMIT once the packet is whole.
 */
export const PACKET_LIMIT = TELEMETRY_LIMIT + 8 * 1024;

const PACKET_NAMES = ['reserved', 'CONNECT', 'CONNACK', 'PUBLISH', 'PUBACK', 'PUBREC', 'PUBREL', 'PUBCOMP', 'SUBSCRIBE', 'SUBACK', 'UNSUBSCRIBE', 'UNSUBACK', 'PINGREQ', 'PINGRESP', 'DISCONNECT', 'AUTH'];

/**
 * Follows the MQTT packet boundaries of an inbound byte stream from the fixed headers alone (a
 * type byte and a variable-length remaining length), so that a packet over its limit is refused
 * from its first bytes, before any of its body is buffered.
 */
export class InboundLimits {
  private accepted = false;
  private readBeforeAccept = 0;
  private header: number[] = [];
  /** Body bytes of the current packet still to come. */
  private left = 0;
  private packets = 0;

  /** The CONNECT was accepted: from now on only the per-packet limit applies. */
  accept(): void {
    this.accepted = true;
  }

  /** Accounts for the next inbound bytes; returns why the connection must end, or undefined. */
  check(chunk: Buffer): string | undefined {
    let i = 0;
    while (i < chunk.length) {
      if (this.left > 0) {
        const n = Math.min(this.left, chunk.length - i);
        this.left -= n;
        i += n;
        continue;
      }
      this.header.push(chunk[i++]);
      if (this.header.length === 1) continue;
      if (this.header[this.header.length - 1] & 0x80) {
        if (this.header.length === 5) return 'malformed remaining length (more than 4 bytes)';
        continue;
      }
      const reason = this.packetStarts(this.header);
      if (reason) return reason;
      this.header = [];
    }
    if (!this.accepted) {
      this.readBeforeAccept += chunk.length;
      if (this.readBeforeAccept > PRE_CONNECT_LIMIT) {
        return `${this.readBeforeAccept} bytes before the CONNECT was accepted, over the ${PRE_CONNECT_LIMIT}-byte limit`;
      }
    }
    return undefined;
  }

  private packetStarts(header: number[]): string | undefined {
    let length = 0;
    for (let k = header.length - 1; k >= 1; k--) length = length * 128 + (header[k] & 0x7f);
    const type = header[0] >> 4;
    const name = PACKET_NAMES[type];
    if (this.packets++ === 0 && type !== 1) return `the first packet is a ${name}, not a CONNECT`;
    const limit = this.accepted ? PACKET_LIMIT : PRE_CONNECT_LIMIT;
    if (length > limit) return `${name} of ${length} bytes is over the ${limit}-byte limit${this.accepted ? '' : ' before authentication'}`;
    this.left = length;
    return undefined;
  }
}

/**
 * A device's connection as the broker sees it: the bytes of `inner` (a TLS socket, or the MQTT
 * bytes carried by a WebSocket) passed through InboundLimits. Over a limit, the connection is
 * destroyed at once: the broker never receives the excess and frees what it held.
 */
export class GuardedConnection extends Duplex {
  private readonly limits = new InboundLimits();
  private deviceId: string | undefined;

  constructor(
    private readonly inner: Duplex,
    /** Who is at the other end, for the log line (the peer's address). */
    private readonly peer: string,
    private readonly log: (message: string) => void,
  ) {
    super({ allowHalfOpen: false });
    inner.on('data', (chunk: Buffer) => {
      if (this.destroyed) return;
      const reason = this.limits.check(chunk);
      if (reason) {
        this.log(`closing ${this.deviceId ? `device ${this.deviceId}` : `connection from ${this.peer}`}: ${reason}`);
        this.destroy();
        return;
      }
      if (!this.push(chunk)) inner.pause();
    });
    inner.on('end', () => this.push(null));
    inner.on('error', (err) => this.destroy(err));
    inner.on('close', () => this.destroy());
  }

  /** The broker accepted this device's CONNECT. */
  accepted(deviceId: string): void {
    this.deviceId = deviceId;
    this.limits.accept();
  }

  override _read(): void {
    this.inner.resume();
  }

  override _write(chunk: Buffer, encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    this.inner.write(chunk, encoding, done);
  }

  override _final(done: (err?: Error | null) => void): void {
    this.inner.end();
    done();
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.inner.destroy();
    done(err);
  }
}
