// HTTP(S) servers with the reference relay's timeouts (docs/decisions.md, "HTTP timeouts"), the autocert
// mode's Host check (2.1) and the listener port allowlist (6.4).

import { constants as cryptoConstants } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import type { TlsOptions } from 'node:tls';
import { HEADER_READ_TIMEOUT_MS, IDLE_TIMEOUT_MS, MAX_HEADER_BYTES, REQUEST_TIMEOUT_MS } from './limits.js';
import { writeRaw } from './responses.js';

/** How often Node checks the two request timeouts above; bounds their precision. */
const TIMEOUT_CHECK_INTERVAL_MS = 500;

const SERVER_OPTIONS = {
  // TLS listeners only: a handshake gets the same bound as the headers (Node's default is 120 s).
  handshakeTimeout: HEADER_READ_TIMEOUT_MS,
  // TLS listeners only: no client-initiated renegotiation (Node allows three per connection, each
  // a full handshake of server CPU; the reference never renegotiates).
  secureOptions: cryptoConstants.SSL_OP_NO_RENEGOTIATION,
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

/** HTTPS with caller-supplied TLS options (autocert mode: SNI/ALPN callbacks, TLS 1.2 minimum). */
export function createSecureServer(tls: TlsOptions): HttpsServer {
  return createHttpsServer({ ...SERVER_OPTIONS, ...tls });
}

/** The request's Host without its port, lowercase; '' when absent. */
export function requestHost(req: IncomingMessage): string {
  const host = req.headers.host ?? '';
  let name: string;
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    name = end < 0 ? host : host.slice(0, end + 1);
  } else {
    const colon = host.lastIndexOf(':');
    name = colon < 0 ? host : host.slice(0, colon);
  }
  return name.toLowerCase();
}

/** An HTTP/1.1 request without Host: Go's server (the reference) answers 400 before any handler,
 * the Host check included, and so do the relay's routes. */
export function missingHost(req: IncomingMessage): boolean {
  return req.httpVersionMajor === 1 && req.httpVersionMinor >= 1 && req.headers.host === undefined;
}

/**
 * Autocert mode's Host check (docs/operations.md, "Autocert (`--domain`)"): every request and upgrade on `server`
 * whose Host (port stripped, case-insensitive) is not `domain` gets 421 Misdirected Request with an
 * empty body, before any route runs — /healthz and /readyz included. An HTTP/1.1 request without
 * Host is left to the routes, which answer 400 like Go's server. Call after the routes were
 * attached: the 'request' and 'upgrade' listeners present now are moved behind the check.
 */
export function requireHost(server: Server, domain: string): void {
  const expected = domain.toLowerCase();
  const misdirected = (req: IncomingMessage): boolean => !missingHost(req) && requestHost(req) !== expected;
  const requestListeners = server.listeners('request') as ((req: IncomingMessage, res: ServerResponse) => void)[];
  const upgradeListeners = server.listeners('upgrade') as ((
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
  ) => void)[];
  server.removeAllListeners('request');
  server.removeAllListeners('upgrade');
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (misdirected(req)) {
      res.writeHead(421, { 'Content-Length': 0 });
      res.end();
      return;
    }
    for (const listener of requestListeners) listener.call(server, req, res);
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (misdirected(req)) {
      socket.on('error', () => {});
      writeRaw(socket, 421, '', '');
      return;
    }
    for (const listener of upgradeListeners) listener.call(server, req, socket, head);
  });
}

export interface PortCheck {
  /** Sorted, ascending. */
  unexpected: number[];
  expected: number[];
}

/**
 * The listener port allowlist (docs/decisions.md, "The listener port allowlist is structural"): the
 * ports the process is about to bind must all be among the ports its flags call for. Returns null
 * when they are, or the sorted surplus and the expected set. (Structural: the daemon binds nothing but its listeners; the check
 * guards against a debug or admin server slipping in.)
 */
export function checkListenerPorts(expected: readonly number[], actual: readonly number[]): PortCheck | null {
  const allowed = new Set(expected);
  const unexpected = [...new Set(actual.filter((p) => !allowed.has(p)))].sort((a, b) => a - b);
  if (unexpected.length === 0) return null;
  return { unexpected, expected: [...allowed].sort((a, b) => a - b) };
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
