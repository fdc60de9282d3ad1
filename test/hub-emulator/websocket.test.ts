import { describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { Agent, request } from 'node:https';
import type { Duplex } from 'node:stream';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import { addDevice } from '../../src/hub-emulator/index.js';
import { serviceClient, serviceRegistry } from '../../src/service/hub-connection.js';
import { eventually, within, hubForSuite, type SuiteHub } from './helpers.js';

/**
 * The SDK's MqttWs always dials wss://<HostName>:443/$iothub/websocket. Its documented
 * `mqtt.webSocketAgent` option decides how the connection is made: this one dials the emulator's
 * HTTPS port instead of 443 (a hub started with --https-port 443 needs no agent).
 */
class HubPortAgent extends Agent {
  constructor(private readonly port: number) {
    super();
  }
  override createConnection(options: import('node:https').RequestOptions, callback?: (err: Error | null, socket: Duplex) => void): Duplex {
    return super.createConnection({ ...options, port: this.port }, callback) as Duplex;
  }
}

interface Upgrade {
  status: number;
  headers: import('node:http').IncomingHttpHeaders;
  body: string;
  socket?: Duplex;
}

function upgrade({ hub, ca }: SuiteHub, path: string, headers: Record<string, string> = {}): Promise<Upgrade> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      servername: 'localhost',
      port: hub.info.httpsPort,
      path,
      ca,
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
        'Sec-WebSocket-Protocol': 'mqtt',
        ...headers,
      },
    });
    req.on('upgrade', (res, socket) => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: '', socket }));
    req.on('response', (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A client frame: masked, as RFC 6455 requires of clients. */
function clientFrame(opcode: number, payload: Buffer, announcedLength = payload.length): Buffer {
  const mask = randomBytes(4);
  const length =
    announcedLength < 126
      ? Buffer.from([0x80 | announcedLength])
      : announcedLength < 0x10000
        ? Buffer.from([0x80 | 126, announcedLength >> 8, announcedLength & 0xff])
        : Buffer.concat([Buffer.from([0x80 | 127]), (() => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(announcedLength)); return b; })()]);
  const masked = Buffer.from(payload.map((b, i) => b ^ mask[i & 3]));
  return Buffer.concat([Buffer.from([0x80 | opcode]), length, mask, masked]);
}

function received(socket: Duplex): { data: () => Buffer; closed: Promise<void> } {
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', () => undefined);
  return { data: () => Buffer.concat(chunks), closed: new Promise((done) => socket.once('close', () => done())) };
}

describe('MQTT over WebSockets on the HTTPS port', () => {
  const suite = hubForSuite();

  it("serves the device SDK's unmodified MqttWs transport: twin, reported properties, direct methods", async () => {
    const cs = (await addDevice(suite.dir, 'ws-1')).replace(/HostName=[^;]+/, `HostName=${suite.hub.info.host}`);
    const client = deviceSdk.Client.fromConnectionString(cs, deviceMqtt.MqttWs);
    await client.setOptions({ ca: suite.ca, mqtt: { webSocketAgent: new HubPortAgent(suite.hub.info.httpsPort) } } as never);
    client.onDeviceMethod('ping', (req, res) => void res.send(200, { pong: req.payload }));
    await within(client.open(), 10_000, 'open over wss');
    expect(suite.log.some((l) => l === 'device ws-1 connected')).toBe(true);
    const twin = await within(client.getTwin(), 5000, 'getTwin over wss');
    await within(
      new Promise<void>((ok, fail) => twin.properties.reported.update({ via: 'wss' }, (err?: Error) => (err ? fail(err) : ok()))),
      5000,
      'reported update',
    );
    const { responseBody } = await serviceRegistry(suite.hub.info).getTwin('ws-1');
    expect(responseBody.properties.reported.via).toBe('wss');
    const { result } = await serviceClient(suite.hub.info).invokeDeviceMethod('ws-1', { methodName: 'ping', payload: 7, responseTimeoutInSeconds: 10 });
    expect(result).toEqual({ status: 200, payload: { pong: 7 } });
    await client.close();
    await eventually(() => !suite.hub.connectedDevices().includes('ws-1'), 3000, 'the device to be gone');
  }, 30_000);

  it('answers the handshake as RFC 6455 says', async () => {
    const key = randomBytes(16).toString('base64');
    const res = await upgrade(suite, '/$iothub/websocket', { 'Sec-WebSocket-Key': key });
    expect(res.status).toBe(101);
    expect(res.headers['sec-websocket-accept']).toBe(createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64'));
    expect(res.headers['sec-websocket-protocol']).toBe('mqtt');
    res.socket!.destroy();
  });

  it('refuses upgrades elsewhere, without the mqtt subprotocol, or of another version, naming the problem', async () => {
    const elsewhere = await upgrade(suite, '/mqtt');
    expect(elsewhere.status).toBe(404);
    expect(elsewhere.body).toContain('MQTT over WebSockets is at /$iothub/websocket');
    const noMqtt = await upgrade(suite, '/$iothub/websocket', { 'Sec-WebSocket-Protocol': 'chat' });
    expect(noMqtt.status).toBe(400);
    expect(noMqtt.body).toContain("needs the 'mqtt' subprotocol");
    const v8 = await upgrade(suite, '/$iothub/websocket', { 'Sec-WebSocket-Version': '8' });
    expect(v8.status).toBe(426);
    expect(v8.headers['sec-websocket-version']).toBe('13');
  });

  it('closes with 1003 on a text frame', async () => {
    const { socket } = await upgrade(suite, '/$iothub/websocket');
    const peer = received(socket!);
    socket!.write(clientFrame(0x1, Buffer.from('hello')));
    await within(peer.closed, 3000, 'the close');
    const reply = peer.data();
    expect(reply[0]).toBe(0x88); // FIN + close
    expect(reply.readUInt16BE(2)).toBe(1003);
  });

  it('applies the MQTT limits to what the frames carry: a 120 MiB CONNECT is cut off at its header', async () => {
    const { socket } = await upgrade(suite, '/$iothub/websocket');
    const peer = received(socket!);
    // One frame announcing 120 MiB whose first bytes are a CONNECT header announcing about as much.
    const total = 120 * 1024 * 1024;
    const header = Buffer.from([0x10, 0xfa, 0xff, 0xff, 0x3b]);
    socket!.write(clientFrame(0x2, header, total).subarray(0, 2 + 8 + 4 + header.length));
    await within(peer.closed, 3000, 'the hub to hang up');
    expect(suite.log.some((l) => /closing connection from .* \(WebSocket\): CONNECT of \d+ bytes is over the 8192-byte limit/.test(l)), suite.log.join('\n')).toBe(true);
  });

  it('answers a ping with a pong carrying the same payload', async () => {
    const { socket } = await upgrade(suite, '/$iothub/websocket');
    const peer = received(socket!);
    socket!.write(clientFrame(0x9, Buffer.from('are you there')));
    await eventually(() => peer.data().length >= 15, 3000, 'the pong');
    expect(peer.data().subarray(0, 15)).toEqual(Buffer.concat([Buffer.from([0x8a, 13]), Buffer.from('are you there')]));
    socket!.destroy();
  });

  it("echoes the peer's close code and hangs up", async () => {
    const { socket } = await upgrade(suite, '/$iothub/websocket');
    const peer = received(socket!);
    socket!.write(clientFrame(0x8, Buffer.from([0x03, 0xe8])));
    await within(peer.closed, 3000, 'the close');
    expect(peer.data()).toEqual(Buffer.from([0x88, 0x02, 0x03, 0xe8]));
  });
});
