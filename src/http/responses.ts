// Fixed, detail-free error responses. Upgrade requests own a raw socket (no ServerResponse), so
// the same responses are also written by hand there.

import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';

/** Go's http.Error shape: plain text, nosniff, the message plus a newline (here always empty). */
const ERROR_HEADERS = {
  'Content-Type': 'text/plain; charset=utf-8',
  'X-Content-Type-Options': 'nosniff',
} as const;

export const NOT_FOUND_BODY = '404 page not found\n';
/** HTTP/1.1 without Host: Go's server (the reference) answers 400 with this before any route. */
export const MISSING_HOST_BODY = 'missing required Host header\n';

/** How long a refused connection Node's parser could not read may linger before it is dropped. */
const PARSER_ERROR_LINGER_MS = 1_000;

/** A status with the newline body of docs/protocol.md, "Every HTTP answer" (400, 429, 503). */
export function sendError(res: ServerResponse, status: number, body = '\n'): void {
  res.writeHead(status, { ...ERROR_HEADERS, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

/** The same response on a raw upgrade socket, then the socket is closed. */
export function writeRawError(socket: Duplex, status: number, body = '\n', extraHeaders = ''): void {
  writeRaw(
    socket,
    status,
    `Content-Type: ${ERROR_HEADERS['Content-Type']}\r\nX-Content-Type-Options: nosniff\r\n${extraHeaders}`,
    body,
  );
}

/** Writes a complete HTTP/1.1 response with `Connection: close` and ends the socket. */
export function writeRaw(socket: Duplex, status: number, headers: string, body: string): void {
  if (socket.destroyed) return;
  const head =
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n` +
    headers +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n`;
  socket.end(head + body);
  // A peer that never reads must not hold the socket open.
  setTimeout(() => socket.destroy(), 5_000).unref();
}

/** The answer to a request Node's HTTP parser refused (400 malformed, 408 header timeout, 431
 * headers too large): the same bare status line and `Connection: close` Node writes by default,
 * no body; the socket is dropped shortly after. */
export function writeParserError(socket: Duplex, status: 400 | 408 | 431): void {
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\n\r\n`);
  setTimeout(() => socket.destroy(), PARSER_ERROR_LINGER_MS).unref();
}
