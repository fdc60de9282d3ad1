import { createServer, createConnection } from 'node:net';
import { stat, unlink } from 'node:fs/promises';

/**
 * How `piota simulate reboot` reaches the simulator: a unix socket in the simulator's directory.
 * The request is one JSON line `{"tryboot": bool}`; the answer `ok` means the simulator accepted
 * the reboot (as `systemctl reboot` returns once the job is queued), after which it stops the daemon.
 */
export interface RebootRequest {
  tryboot: boolean;
}

/** Linux's sun_path holds 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH = 107;

export interface RebootListener {
  /** Stops listening and removes the socket file, unless another simulator has replaced it since. */
  close(): Promise<void>;
}

/** true when a process accepts connections on the socket (a live simulator, not a stale file). */
function socketAnswers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const conn = createConnection(socketPath);
    conn.once('connect', () => {
      conn.destroy();
      resolve(true);
    });
    conn.once('error', () => resolve(false));
  });
}

/**
 * Listens on `socketPath`. Refuses when a simulator already listens there (one board, one
 * firmware); a socket file left by a simulator that was killed is replaced.
 */
export async function listenForReboots(socketPath: string, onRequest: (request: RebootRequest) => void): Promise<RebootListener> {
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) {
    throw new Error(`${socketPath}: the path is too long for a unix socket (${MAX_SOCKET_PATH} bytes at most); use a shorter --dir`);
  }
  if (await socketAnswers(socketPath)) throw new Error(`${socketPath}: another simulated Pi is already running in this directory`);
  await unlink(socketPath).catch(() => undefined);
  const server = createServer((conn) => {
    let buffered = '';
    conn.setEncoding('utf8');
    conn.on('error', () => undefined);
    conn.on('data', (chunk: string) => {
      buffered += chunk;
      if (buffered.length > 1024) return conn.destroy();
      const newline = buffered.indexOf('\n');
      if (newline < 0) return;
      let request: RebootRequest;
      try {
        const parsed = JSON.parse(buffered.slice(0, newline)) as unknown;
        if (typeof parsed !== 'object' || parsed === null || typeof (parsed as RebootRequest).tryboot !== 'boolean') throw new Error('bad request');
        request = { tryboot: (parsed as RebootRequest).tryboot };
      } catch {
        conn.end('error: expected {"tryboot": true|false}\n');
        return;
      }
      conn.end('ok\n', () => onRequest(request));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const ours = (await stat(socketPath)).ino;
  return {
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      const now = await stat(socketPath).catch(() => undefined);
      if (now?.ino === ours) await unlink(socketPath).catch(() => undefined);
    },
  };
}

/** Asks the simulator behind `socketPath` to reboot; resolves once it accepted. */
export function requestReboot(socketPath: string, request: RebootRequest, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const conn = createConnection(socketPath);
    let answer = '';
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new Error(`${socketPath}: the simulator did not answer within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(JSON.stringify(request) + '\n'));
    conn.on('data', (chunk: string) => (answer += chunk));
    conn.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const why = err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? 'no simulated Pi is running there' : err.message;
      reject(new Error(`${socketPath}: ${why}`));
    });
    conn.on('close', () => {
      clearTimeout(timer);
      if (answer.trim() === 'ok') resolve();
      else reject(new Error(`${socketPath}: the simulator refused the reboot (${answer.trim() || 'no answer'})`));
    });
  });
}
