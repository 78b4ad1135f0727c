// Loopback ports for tests: a port to hand to a daemon or a fake server, and whether something
// listens on one. Everything binds or dials 127.0.0.1 only.

import { createServer, connect as netConnect } from 'node:net';
import { withTimeout } from './wait.js';

/** A port that was free a moment ago (bind port 0 on 127.0.0.1, read it, close). */
export function freePort(): Promise<number> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const srv = createServer();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const address = srv.address();
        const port = typeof address === 'object' && address !== null ? address.port : 0;
        srv.close(() => resolve(port));
      });
    }),
    5_000,
    'a free port',
  );
}

/** True if something accepts TCP connections on 127.0.0.1:port. */
export function accepts(port: number, timeoutMs = 2_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(false);
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}
