// Raw HTTP for tests: plain requests through node:http, hand-written requests (and WebSocket
// upgrade requests) over a net socket on 127.0.0.1, and parsed answers. The relay's edge is tested
// with bytes a real client could send, including the ones node:http and ws refuse to write.

import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { connect as netConnect } from 'node:net';
import WebSocket from 'ws';
import { withTimeout } from './wait.js';

// ---- Plain requests (node:http) ----

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A plain HTTP request (no upgrade). */
export function httpGet(
  url: string,
  options: { method?: string; headers?: Record<string, string> } = {},
): Promise<RawResponse> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const req = httpRequest(
        url,
        { method: options.method ?? 'GET', headers: options.headers, agent: false },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: Buffer.concat(chunks).toString('utf8'),
            }),
          );
        },
      );
      req.on('error', reject);
      req.end();
    }),
    5_000,
    `HTTP ${options.method ?? 'GET'} ${url}`,
  );
}

/** An upgrade request's HTTP answer (status, body, headers) when the server refuses it. */
export async function upgradeStatus(
  target: { wsUrl: string },
  path: string,
  headers: Record<string, string>,
): Promise<RawResponse> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const ws = new WebSocket(`${target.wsUrl}${path}`, { headers, perMessageDeflate: false });
      ws.on('error', () => {});
      ws.once('unexpected-response', (_req, res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }),
        );
      });
      ws.once('open', () => {
        ws.terminate();
        reject(new Error(`expected an HTTP rejection for ${path}, got an open WebSocket`));
      });
    }),
    5_000,
    `HTTP answer to upgrade ${path}`,
  );
}

// ---- Hand-written requests ----

/** The sample key of RFC 6455 section 1.3, and the Sec-WebSocket-Accept a server must answer. */
export const WS_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
export const WS_ACCEPT = createHash('sha1').update(`${WS_KEY}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');

/** The four handshake headers of a valid WebSocket upgrade, as header lines. */
export const UPGRADE_HEADERS = `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${WS_KEY}\r\n`;

/** The same handshake headers as pairs, for requests that edit or reorder them. */
export const WS_HANDSHAKE: readonly [string, string][] = [
  ['Connection', 'Upgrade'],
  ['Upgrade', 'websocket'],
  ['Sec-WebSocket-Version', '13'],
  ['Sec-WebSocket-Key', WS_KEY],
];

export function headerLines(headers: Record<string, string>): string {
  return Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
}

/** A raw request with `Host: 127.0.0.1` and then the headers in the given order (pairs allow
 * duplicates and odd values). */
export function requestText(method: string, path: string, headers: readonly [string, string][]): string {
  return `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
}

/** A complete WebSocket upgrade request for `path` with the given extra headers. */
export function upgradeRequest(path: string, headers: Record<string, string> = {}, host = '127.0.0.1'): string {
  return `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n${UPGRADE_HEADERS}${headerLines(headers)}\r\n`;
}

/** The status code of an HTTP/1.1 response text; throws if it is not one. */
export function statusOf(response: string): number {
  const m = /^HTTP\/1\.1 (\d{3}) /.exec(response);
  if (m === null) throw new Error(`not an HTTP response: ${JSON.stringify(response.slice(0, 80))}`);
  return Number(m[1]);
}

// ---- Raw exchanges over a net socket ----

/** Sends raw bytes on a TCP connection and returns everything the server wrote until it closed. */
export function rawExchange(port: number, request: string | Buffer, timeoutMs = 5_000): Promise<string> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const socket = netConnect({ host: '127.0.0.1', port }, () => socket.write(request));
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('error', reject);
      socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    }),
    timeoutMs,
    'raw exchange to close',
  );
}

export interface RawAnswer {
  /** Status code of the first response line, 0 if the server wrote nothing parseable. */
  status: number;
  /** Everything the server wrote (latin1). */
  text: string;
  /** True if the server closed (or reset) the connection within the wait. */
  closed: boolean;
  /** Milliseconds from the first byte sent until the close (or until the wait ended). */
  ms: number;
}

export interface RawOptions {
  /** Source address, e.g. '127.0.0.7' (all of 127/8 routes to lo on Linux). */
  localAddress?: string;
  /** How long to wait for the server to close after the last byte was sent. */
  waitMs?: number;
  /** Resolve as soon as a complete status line arrived (keep-alive answers never close). */
  untilStatus?: boolean;
}

/** Sends `request` and reports what came back, whether and when the server closed. The socket is
 * always destroyed before this resolves; it never rejects. */
export function rawRequest(port: number, request: string | Buffer, options: RawOptions = {}): Promise<RawAnswer> {
  const waitMs = options.waitMs ?? 5_000;
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let closed = false;
    let t0 = 0;
    const socket = netConnect({ host: '127.0.0.1', port, localAddress: options.localAddress }, () => {
      t0 = Date.now();
      socket.write(request);
    });
    const finish = (): void => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      socket.destroy();
      resolve({ status: m ? Number(m[1]) : 0, text, closed, ms: Date.now() - (t0 || Date.now()) });
    };
    const timer = setTimeout(finish, waitMs);
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      if (
        options.untilStatus &&
        /^HTTP\/1\.[01] \d{3}[^\r\n]*\r\n[\s\S]*?\r\n\r\n/.test(Buffer.concat(chunks).toString('latin1'))
      ) {
        finish();
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      closed = true;
      finish();
    });
  });
}

/** A response split into status line, headers (lower-case name -> values in order) and body. */
export interface ParsedResponse {
  status: number;
  statusLine: string;
  headers: Map<string, string[]>;
  body: string;
  raw: string;
}

export function parseResponse(raw: string): ParsedResponse {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) throw new Error(`no complete HTTP head in ${JSON.stringify(raw.slice(0, 200))}`);
  const lines = raw.slice(0, end).split('\r\n');
  const statusLine = lines[0]!;
  const status = Number(statusLine.split(' ')[1]);
  const headers = new Map<string, string[]>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers.set(name, [...(headers.get(name) ?? []), value]);
  }
  return { status, statusLine, headers, body: raw.slice(end + 4), raw };
}

/** Raw request, read until the HTTP head (and a Content-Length body, if any) is complete or the
 * server closed; the socket is then destroyed. Errors after some bytes arrived (e.g. a reset after
 * the server refused) still return what was received. */
export function rawHttp(port: number, request: string, timeoutMs = 5_000): Promise<ParsedResponse> {
  return withTimeout(
    new Promise<ParsedResponse>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let done = false;
      const socket = netConnect({ host: '127.0.0.1', port }, () => socket.write(request));
      const finish = (): void => {
        if (done) return;
        done = true;
        socket.destroy();
        try {
          resolve(parseResponse(Buffer.concat(chunks).toString('latin1')));
        } catch (err) {
          reject(err as Error);
        }
      };
      socket.on('data', (c: Buffer) => {
        chunks.push(c);
        const text = Buffer.concat(chunks).toString('latin1');
        const end = text.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = parseResponse(text);
        if (head.status === 101) {
          finish();
          return;
        }
        const len = head.headers.get('content-length')?.[0];
        if (len !== undefined && Buffer.byteLength(head.body, 'latin1') >= Number(len)) finish();
      });
      socket.on('error', (err) => {
        if (chunks.length > 0) finish();
        else if (!done) {
          done = true;
          reject(err);
        }
      });
      socket.on('close', () => {
        if (chunks.length > 0) finish();
        else if (!done) {
          done = true;
          reject(new Error('closed without a response'));
        }
      });
    }),
    timeoutMs,
    'raw HTTP response',
  );
}
