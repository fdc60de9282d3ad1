import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex as Socket } from 'node:stream';
import { Duplex } from 'node:stream';

/** IoT Hub's path for MQTT over WebSockets (the device SDK's MqttWs connects to it). */
export const MQTT_WEBSOCKET_PATH = '/$iothub/websocket';

const ACCEPT_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const OP = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;
const CLOSE = { protocolError: 1002, unsupportedData: 1003, tooBig: 1009 } as const;

function refuse(socket: Socket, status: string, message: string, extraHeaders = ''): void {
  const body = message + '\n';
  socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extraHeaders}\r\n${body}`);
}

/** One unmasked server frame (servers never mask, RFC 6455 5.1). */
function frame(opcode: number, payload: Buffer): Buffer {
  const n = payload.length;
  let head: Buffer;
  if (n < 126) {
    head = Buffer.from([0x80 | opcode, n]);
  } else if (n < 0x10000) {
    head = Buffer.alloc(4);
    head[1] = 126;
    head.writeUInt16BE(n, 2);
  } else {
    head = Buffer.alloc(10);
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  head[0] = 0x80 | opcode;
  return Buffer.concat([head, payload]);
}

function closeFrame(code: number, reason = ''): Buffer {
  const body = Buffer.alloc(2 + Buffer.byteLength(reason));
  body.writeUInt16BE(code, 0);
  body.write(reason, 2);
  return frame(OP.close, body);
}

/**
 * Answers a WebSocket upgrade on `/$iothub/websocket` with the `mqtt` subprotocol, as IoT Hub
 * does on port 443. Returns the stream of MQTT bytes it carries, or undefined after refusing the
 * upgrade with an HTTP error that names the problem.
 */
export function acceptMqttWebSocket(req: IncomingMessage, socket: Socket, head: Buffer, log: (message: string) => void): WebSocketStream | undefined {
  const path = (req.url ?? '').split('?')[0];
  const key = req.headers['sec-websocket-key'];
  const protocols = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
  const problem =
    path !== MQTT_WEBSOCKET_PATH
      ? ['404 Not Found', `no WebSocket endpoint at '${path}' (MQTT over WebSockets is at ${MQTT_WEBSOCKET_PATH})`]
      : req.method !== 'GET' || (req.headers.upgrade ?? '').toLowerCase() !== 'websocket'
        ? ['400 Bad Request', 'expected a GET with Upgrade: websocket']
        : req.headers['sec-websocket-version'] !== '13'
          ? ['426 Upgrade Required', 'only WebSocket version 13 is supported', 'Sec-WebSocket-Version: 13\r\n']
          : typeof key !== 'string' || Buffer.from(key, 'base64').length !== 16
            ? ['400 Bad Request', 'Sec-WebSocket-Key must be 16 bytes in base64']
            : !protocols.includes('mqtt')
              ? ['400 Bad Request', "MQTT over WebSockets needs the 'mqtt' subprotocol (Sec-WebSocket-Protocol: mqtt)"]
              : undefined;
  if (problem) {
    log(`WebSocket upgrade refused: ${problem[1]}`);
    refuse(socket, problem[0], problem[1], problem[2]);
    return undefined;
  }
  const accept = createHash('sha1')
    .update(key + ACCEPT_GUID)
    .digest('base64');
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n`);
  return new WebSocketStream(socket, head);
}

/**
 * The payload bytes of a WebSocket's binary messages as a byte stream, and each write sent as one
 * binary frame. Payloads are unmasked and passed on as they arrive, never gathered into whole
 * frames: a frame of any announced length costs no memory here (the MQTT limits downstream cut it
 * off). Only control frames (at most 125 bytes) are collected.
 */
export class WebSocketStream extends Duplex {
  private head: number[] = [];
  /** Payload bytes of the current frame still to come; undefined while reading a frame header. */
  private left: number | undefined;
  private mask = Buffer.alloc(4);
  private maskAt = 0;
  private opcode = 0;
  private control: Buffer[] = [];
  /** Inside a fragmented binary message (continuation frames expected). */
  private fragmented = false;
  private closeSent = false;
  /** The peer's close frame arrived: whatever follows it is not read. */
  private peerClosed = false;

  constructor(
    private readonly socket: Socket,
    head: Buffer,
  ) {
    super({ allowHalfOpen: false });
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.destroy());
    if (head.length > 0) this.receive(head);
  }

  private receive(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length && !this.destroyed && !this.peerClosed) {
      if (this.left === undefined) {
        this.head.push(chunk[i++]);
        const problem = this.headerRead();
        if (problem) return this.fail(problem[0], problem[1]);
        continue;
      }
      const n = Math.min(this.left, chunk.length - i);
      const part = Buffer.from(chunk.subarray(i, i + n));
      for (let k = 0; k < n; k++) part[k] ^= this.mask[(this.maskAt + k) & 3];
      this.maskAt += n;
      this.left -= n;
      i += n;
      if (this.opcode >= OP.close) this.control.push(part);
      else if (!this.push(part)) this.socket.pause();
      if (this.left === 0) this.frameDone();
    }
  }

  /** After each header byte: once the header is whole, checks it and starts the payload. */
  private headerRead(): [number, string] | undefined {
    const h = this.head;
    if (h.length < 2) return undefined;
    if (!(h[1] & 0x80)) return [CLOSE.protocolError, 'client frames must be masked'];
    const len7 = h[1] & 0x7f;
    const size = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + 4;
    if (h.length < size) return undefined;
    const bytes = Buffer.from(h);
    const fin = (h[0] & 0x80) !== 0;
    const opcode = h[0] & 0x0f;
    let length = len7 === 126 ? bytes.readUInt16BE(2) : len7 === 127 ? Number(bytes.readBigUInt64BE(2)) : len7;
    if (!Number.isSafeInteger(length)) length = Infinity;
    if (h[0] & 0x70) return [CLOSE.protocolError, 'reserved bits set (no extension was negotiated)'];
    if (opcode >= OP.close) {
      if (![OP.close, OP.ping, OP.pong].includes(opcode as 8)) return [CLOSE.protocolError, `unknown control opcode ${opcode}`];
      if (!fin || length > 125) return [CLOSE.protocolError, 'control frames must be whole and at most 125 bytes'];
    } else if (opcode === OP.text) {
      return [CLOSE.unsupportedData, 'MQTT is carried in binary frames, not text'];
    } else if (opcode === OP.binary ? this.fragmented : opcode !== OP.continuation || !this.fragmented) {
      return [CLOSE.protocolError, `unexpected ${opcode === OP.binary ? 'binary' : `opcode ${opcode}`} frame`];
    } else {
      this.fragmented = !fin;
    }
    if (length === Infinity) return [CLOSE.tooBig, 'frame length out of range'];
    this.opcode = opcode;
    bytes.copy(this.mask, 0, size - 4, size);
    this.maskAt = 0;
    this.head = [];
    this.left = length;
    if (length === 0) this.frameDone();
    return undefined;
  }

  private frameDone(): void {
    this.left = undefined;
    if (this.opcode < OP.close) return;
    const payload = Buffer.concat(this.control);
    this.control = [];
    if (this.opcode === OP.ping) {
      this.socket.write(frame(OP.pong, payload));
    } else if (this.opcode === OP.close) {
      // Echo the peer's status code (RFC 6455 5.5.1), then end as after any MQTT DISCONNECT.
      this.peerClosed = true;
      this.sendClose(payload.length >= 2 ? frame(OP.close, payload.subarray(0, 2)) : closeFrame(1000));
      this.push(null);
    }
  }

  private sendClose(closing: Buffer): void {
    if (this.closeSent) return;
    this.closeSent = true;
    this.socket.end(closing);
  }

  private fail(code: number, reason: string): void {
    this.sendClose(closeFrame(code, reason));
    this.destroy(new Error(`WebSocket: ${reason}`));
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    if (this.closeSent) return done(new Error('WebSocket closed'));
    this.socket.write(frame(OP.binary, chunk), done);
  }

  override _final(done: (err?: Error | null) => void): void {
    this.sendClose(closeFrame(1000));
    done();
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    // A close frame just sent gets a moment to leave; otherwise the socket goes now.
    if (this.closeSent) setTimeout(() => this.socket.destroy(), 1000).unref();
    else this.socket.destroy();
    done(err);
  }
}
