import { describe, expect, it } from 'vitest';
import { once } from 'node:events';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import mqtt from 'mqtt';
import { InboundLimits, PACKET_LIMIT, PRE_CONNECT_LIMIT } from '../../src/hub-emulator/connection-guard.js';
import { addDevice } from '../../src/hub-emulator/index.js';
import { makeSasToken } from '../../src/hub-emulator/sas.js';
import { eventually, within, hubForSuite } from './helpers.js';

/** MQTT's variable-length "remaining length" field. */
function remainingLength(n: number): Buffer {
  const out: number[] = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return Buffer.from(out);
}

/** Streams `total` bytes of a bogus packet (with backpressure), stopping when the hub hangs up. */
async function streamUntilClosed(socket: TLSSocket, header: Buffer, total: number): Promise<{ sent: number; closed: boolean }> {
  let closed = false;
  let wake = () => undefined as void;
  socket.on('error', () => undefined);
  socket.on('drain', () => wake());
  socket.once('close', () => {
    closed = true;
    wake();
  });
  const chunk = Buffer.alloc(64 * 1024, 0x41);
  let sent = 0;
  socket.write(header);
  while (sent < total && !closed) {
    if (!socket.write(chunk)) await new Promise<void>((r) => (wake = r));
    sent += chunk.length;
  }
  if (!closed) await within(once(socket, 'close'), 3000, 'the hub to hang up').catch(() => undefined);
  return { sent, closed };
}

describe('the hub caps what it reads', () => {
  const suite = hubForSuite();

  it('hangs up on an unauthenticated 120 MiB CONNECT without buffering it', async () => {
    const total = 120 * 1024 * 1024;
    global.gc?.();
    const before = process.memoryUsage();
    const socket = tlsConnect({ host: '127.0.0.1', port: suite.hub.info.mqttPort, ca: suite.ca, servername: 'localhost' });
    await once(socket, 'secureConnect');
    const { sent, closed } = await within(streamUntilClosed(socket, Buffer.concat([Buffer.from([0x10]), remainingLength(total)]), total), 20_000, 'streaming');
    const after = process.memoryUsage();

    expect(closed, 'the hub should have closed the connection').toBe(true);
    // The loopback socket buffers hold a few MiB in flight; the hub itself reads at most its cap.
    expect(sent).toBeLessThan(32 * 1024 * 1024);
    expect(after.rss - before.rss).toBeLessThan(48 * 1024 * 1024);
    await eventually(() => suite.log.some((l) => /CONNECT of 125829120 bytes/.test(l)), 2000, 'the refusal in the log');
  }, 30_000);

  it('hangs up on a 300 KB PUBLISH from an authenticated device, and keeps serving it after a reconnect', async () => {
    const cs = await addDevice(suite.dir, 'big-1');
    // The device SDK refuses to send over 256 KiB itself: a plain MQTT client sends what it is given.
    const key = /SharedAccessKey=([^;]+)/.exec(cs)![1];
    const connect = async () => {
      const client = mqtt.connect(`mqtts://${suite.hub.info.host}:${suite.hub.info.mqttPort}`, {
        clientId: 'big-1',
        username: `${suite.hub.info.host}/big-1/?api-version=2021-04-12`,
        password: makeSasToken(`${suite.hub.info.host}/devices/big-1`, key, Math.floor(Date.now() / 1000) + 600),
        ca: suite.ca,
        reconnectPeriod: 0,
      });
      await within(once(client, 'connect'), 5000, 'CONNACK');
      client.on('error', () => undefined); // the hang-up below shows as ECONNRESET
      return client;
    };
    const publish = (client: mqtt.MqttClient, bytes: number) =>
      new Promise<Error | undefined>((done) => client.publish('devices/big-1/messages/events/', Buffer.alloc(bytes, 0x61), { qos: 1 }, (err) => done(err ?? undefined)));
    const client = await connect();
    // Ordinary traffic, up to IoT Hub's 256 KiB, passes the limits.
    expect(await within(publish(client, 256 * 1024), 5000, 'a 256 KiB message')).toBeUndefined();
    expect(suite.hub.telemetryCount('big-1')).toBe(1);
    const closed = new Promise((done) => client.once('close', done));
    void publish(client, 300 * 1024);
    await within(closed, 5000, 'the hub to hang up');
    expect(suite.log.some((l) => /closing device big-1: PUBLISH of \d+ bytes is over the 270336-byte limit/.test(l)), suite.log.join('\n')).toBe(true);
    expect(suite.hub.telemetryCount('big-1')).toBe(1);
    client.end(true);
    // The device is not banned: a new connection works as before.
    const again = await connect();
    expect(await within(publish(again, 10), 5000, 'a small message')).toBeUndefined();
    expect(suite.hub.telemetryCount('big-1')).toBe(2);
    again.end(true);
  }, 30_000);

  it('hangs up on a first packet that is not a CONNECT', async () => {
    const socket = tlsConnect({ host: '127.0.0.1', port: suite.hub.info.mqttPort, ca: suite.ca, servername: 'localhost' });
    await once(socket, 'secureConnect');
    const { closed } = await streamUntilClosed(socket, Buffer.from([0x30, 0x05, 0x00, 0x01, 0x61, 0x62, 0x63]), 0);
    expect(closed).toBe(true);
    expect(suite.log.some((l) => /the first packet is a PUBLISH, not a CONNECT/.test(l))).toBe(true);
  });
});

describe('InboundLimits', () => {
  const connect = (n: number) => Buffer.concat([Buffer.from([0x10]), remainingLength(n), Buffer.alloc(n)]);

  it('lets a small CONNECT through, then packets up to the packet limit', () => {
    const limits = new InboundLimits();
    expect(limits.check(connect(300))).toBeUndefined();
    limits.accept();
    const publish = Buffer.concat([Buffer.from([0x30]), remainingLength(PACKET_LIMIT)]);
    expect(limits.check(publish)).toBeUndefined();
    // The body streams in pieces; the next header is read where the body ends.
    for (let left = PACKET_LIMIT; left > 0; left -= 50_000) expect(limits.check(Buffer.alloc(Math.min(50_000, left)))).toBeUndefined();
    expect(limits.check(Buffer.from([0xc0, 0x00]))).toBeUndefined(); // PINGREQ
    expect(limits.check(Buffer.concat([Buffer.from([0x30]), remainingLength(PACKET_LIMIT + 1)]))).toBe(
      `PUBLISH of ${PACKET_LIMIT + 1} bytes is over the ${PACKET_LIMIT}-byte limit`,
    );
  });

  it('refuses a CONNECT over the pre-authentication limit from its header alone', () => {
    expect(new InboundLimits().check(Buffer.from([0x10, ...remainingLength(PRE_CONNECT_LIMIT + 1)]))).toBe(
      `CONNECT of ${PRE_CONNECT_LIMIT + 1} bytes is over the ${PRE_CONNECT_LIMIT}-byte limit before authentication`,
    );
  });

  it('counts every byte sent before the CONNECT is accepted, however it is split into packets', () => {
    const limits = new InboundLimits();
    expect(limits.check(connect(4000))).toBeUndefined();
    const pingreqs = Buffer.alloc(PRE_CONNECT_LIMIT, Buffer.from([0xc0, 0x00]));
    expect(limits.check(pingreqs)).toMatch(/bytes before the CONNECT was accepted, over the 8192-byte limit/);
  });

  it('refuses a remaining length longer than 4 bytes', () => {
    expect(new InboundLimits().check(Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x01]))).toBe('malformed remaining length (more than 4 bytes)');
  });
});
