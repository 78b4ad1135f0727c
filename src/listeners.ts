// HTTP(S) servers with the reference relay's timeouts (relay-behaviour.md 2.4, 5.2).

import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';

/** Headers must be complete within this long (slow-loris bound; 408 after it). */
export const HEADER_READ_TIMEOUT_MS = 5_000;
/** The whole request (headers and body) of a plain HTTP request. */
export const REQUEST_TIMEOUT_MS = 60_000;
/** Idle keep-alive connections are closed after this long. */
export const IDLE_TIMEOUT_MS = 120_000;
/** Requests with larger headers get 431 (DECISIONS.md). */
export const MAX_HEADER_BYTES = 64 * 1024;
/** How often Node checks the two request timeouts above; bounds their precision. */
const TIMEOUT_CHECK_INTERVAL_MS = 500;

const SERVER_OPTIONS = {
  maxHeaderSize: MAX_HEADER_BYTES,
  headersTimeout: HEADER_READ_TIMEOUT_MS,
  requestTimeout: REQUEST_TIMEOUT_MS,
  keepAliveTimeout: IDLE_TIMEOUT_MS,
  connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
} as const;

export function createPlainServer(): Server {
  return createHttpServer(SERVER_OPTIONS);
}

/** HTTPS from PEM bytes, TLS 1.2 minimum. */
export function createTlsServer(cert: Buffer, key: Buffer): Server {
  return createHttpsServer({ ...SERVER_OPTIONS, cert, key, minVersion: 'TLSv1.2' }) as unknown as Server;
}

/** Listens; resolves with the bound address or rejects with the listen error. */
export function listen(server: Server, host: string, port: number): Promise<{ host: string; port: number }> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen({ host: host === '' ? undefined : host, port }, () => {
      server.off('error', onError);
      const address = server.address();
      if (address === null || typeof address === 'string') resolve({ host, port });
      else resolve({ host: address.address, port: address.port });
    });
  });
}

/** Stops accepting, closes idle keep-alive connections; resolves when the server closed. */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}
