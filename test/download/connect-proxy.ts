import { createServer, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

export interface TestConnectProxy {
  url: string;
  /** The targets (host:port) of the tunnels opened, in order. */
  tunnels: string[];
  /** The Proxy-Authorization header of each CONNECT, in order. */
  authorizations: (string | undefined)[];
  /** Answer CONNECT with this status instead of opening the tunnel. */
  refuseWith?: number;
  close(): Promise<void>;
}

/**
 * A real HTTP CONNECT proxy on 127.0.0.1 that only tunnels bytes (it never sees inside TLS) and
 * counts its tunnels, for tests. It refuses anything that is not CONNECT, as the download path must
 * never send a plain request through it.
 */
export async function startConnectProxy(): Promise<TestConnectProxy> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((_req, res) => res.writeHead(405).end('CONNECT only'));
  const proxy: TestConnectProxy = {
    url: '',
    tunnels: [],
    authorizations: [],
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  server.on('connect', (req, client: Socket, head: Buffer) => {
    sockets.add(client);
    proxy.authorizations.push(req.headers['proxy-authorization']);
    if (proxy.refuseWith) {
      client.end(`HTTP/1.1 ${proxy.refuseWith} Refused\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    const target = req.url ?? '';
    const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(target);
    if (!m) {
      client.end('HTTP/1.1 400 Bad Request\r\n\r\n');
      return;
    }
    proxy.tunnels.push(target);
    let connected = false;
    const upstream = connect(Number(m[2]), m[1], () => {
      connected = true;
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    sockets.add(upstream);
    const end = () => {
      upstream.destroy();
      client.destroy();
    };
    upstream.on('error', () => (connected ? end() : client.end('HTTP/1.1 502 Bad Gateway\r\n\r\n')));
    upstream.on('close', () => connected && end());
    client.on('error', end);
    client.on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return proxy;
}
