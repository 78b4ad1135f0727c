// The public listener's request handling (docs/protocol.md, "What happens to an upgrade request, in order"):
// exact-path routes, then for /v1/server and /v1/client the pipeline rate limit -> connection cap ->
// header gate -> WebSocket handshake -> endpoint handler. Plain requests and upgrade requests go through the
// same steps, so /v1/* without `Upgrade` still gets 429/503/400 before its 426.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { WebSocket, WebSocketServer } from 'ws';
import { clientIp, remoteHost } from './client-ip.js';
import { firstHeader } from './first-header.js';
import type { ConnCap } from './conn-cap.js';
import type { Logger } from '../log.js';
import type { Endpoint, RelayMetrics, UpgradeRejection } from '../metrics/metrics.js';
import type { RateLimiter } from './rate-limiter.js';
import { rateLimitKey } from './rate-limit-key.js';
import { HEALTH_HEADERS } from './health.js';
import { missingHost } from './listeners.js';
import {
  MISSING_HOST_BODY,
  NOT_FOUND_BODY,
  sendError,
  writeParserError,
  writeRaw,
  writeRawError,
} from './responses.js';
import { decodeServerId } from './server-id.js';

export const SERVER_PATH = '/v1/server';
export const CLIENT_PATH = '/v1/client';
export const HEALTH_PATH = '/healthz';
export const READY_PATH = '/readyz';

/** Headers that must be present and non-empty, per endpoint
 * (docs/protocol.md, "Request headers and what the relay does with each"). */
const REQUIRED_HEADERS: Record<Endpoint, readonly string[]> = {
  server: ['x-pyrycode-server', 'x-pyrycode-version', 'user-agent'],
  client: ['x-pyrycode-server', 'x-pyrycode-token', 'user-agent'],
};

/** What passed the header gate. Only these values leave the pipeline; the token never does. */
export interface AdmittedRequest {
  endpoint: Endpoint;
  serverId: string;
  /** X-Pyrycode-Version (server) or X-Pyrycode-Device-Name (client, may be ''). */
  label: string;
  remote: string;
}

export interface PipelineDeps {
  limiter: RateLimiter;
  cap: ConnCap;
  metrics: RelayMetrics;
  log: Logger;
  wss: WebSocketServer;
  trustXForwardedFor: boolean;
  isDraining(): boolean;
  /** Cluster mode: true when this request cannot be decided now (HTTP 503 before the upgrade). */
  unavailable?(endpoint: Endpoint, serverId: string): boolean;
  health(): string;
  /** /readyz: 200 while serving, 503 once a drain started. */
  readiness(): { status: number; body: string };
  /** A WebSocket passed every gate. Call `release` exactly once, when its handler ends. */
  onConnection(ws: WebSocket, admitted: AdmittedRequest, release: () => void): void;
}

/** /healthz and /readyz headers (health.ts), as raw header lines for upgrade sockets. */
const HEALTH_RAW_HEADERS = Object.entries(HEALTH_HEADERS)
  .map(([name, value]) => `${name}: ${value}\r\n`)
  .join('');

/** Resets and the like on an upgrade socket: 'close' follows and does the accounting. One shared
 * function instead of a closure per connection. */
function ignoreSocketError(): void {}

export function createPipeline(deps: PipelineDeps): {
  onRequest(req: IncomingMessage, res: ServerResponse): void;
  onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  onClientError(err: Error & { code?: string }, socket: Duplex): void;
} {
  /** The slot release handed to every connection's handler (one function, not one per connection). */
  const releaseSlot = (): void => deps.cap.release();

  /** Steps 1-3. Returns the admitted request, or writes the rejection and returns null. */
  const admit = (
    req: IncomingMessage,
    endpoint: Endpoint,
    path: string,
    reject: (status: number) => void,
  ): AdmittedRequest | null => {
    if (deps.isDraining()) {
      reject(503);
      deps.metrics.upgradeRejected(endpoint, 'draining_503');
      return null;
    }
    const ip = clientIp(req, deps.trustXForwardedFor);
    const decision = ip === '' ? 'deny' : deps.limiter.take(rateLimitKey(ip));
    if (decision !== 'allow') {
      reject(429);
      deps.metrics.rateLimited(endpoint);
      if (decision === 'table_full') deps.metrics.rateLimitTableFull();
      // Quoted: with --trust-x-forwarded-for the key comes from a client-supplied header.
      deps.log.warn('rate_limited', { remote: JSON.stringify(ip) });
      return null;
    }
    const remote = remoteHost(req);
    if (!deps.cap.tryAcquire()) {
      reject(503);
      deps.metrics.upgradeRejected(endpoint, 'conn_cap_503');
      deps.log.warn('conn_cap_reached', { path, remote });
      return null;
    }
    const headersRefused = (): null => {
      deps.cap.release();
      reject(400);
      deps.metrics.headersRejected(endpoint); // deliberately not logged (no log amplification)
      return null;
    };
    for (const name of REQUIRED_HEADERS[endpoint]) {
      const value = firstHeader(req, name);
      if (value === undefined || value.trim() === '') return headersRefused();
    }
    // Not valid UTF-8, or longer than MAX_SERVER_ID_BYTES: refused like a missing header.
    const serverId = decodeServerId(firstHeader(req, 'x-pyrycode-server')!);
    if (serverId === null) return headersRefused();
    if (deps.unavailable?.(endpoint, serverId) === true) {
      // Cluster mode with the engine unreachable or this instance fenced (counted by the cluster).
      deps.cap.release();
      reject(503);
      return null;
    }
    const labelHeader = endpoint === 'server' ? 'x-pyrycode-version' : 'x-pyrycode-device-name';
    return {
      endpoint,
      serverId,
      label: headerText(firstHeader(req, labelHeader) ?? ''),
      remote,
    };
  };

  return {
    onRequest(req, res) {
      if (missingHost(req)) {
        deps.metrics.httpError('bad_request_400');
        sendError(res, 400, MISSING_HOST_BODY);
        return;
      }
      const path = pathOf(req.url);
      if (path === HEALTH_PATH) {
        res.writeHead(200, HEALTH_HEADERS);
        res.end(deps.health());
        return;
      }
      if (path === READY_PATH) {
        const { status, body } = deps.readiness();
        res.writeHead(status, HEALTH_HEADERS);
        res.end(body);
        return;
      }
      const endpoint = endpointOf(path);
      if (endpoint === null) {
        deps.metrics.httpError('not_found_404');
        sendError(res, 404, NOT_FOUND_BODY);
        return;
      }
      const admitted = admit(req, endpoint, path, (status) => sendError(res, status));
      if (admitted === null) return;
      // Passed every gate but is not a WebSocket handshake: the handshake layer's answer.
      deps.cap.release();
      const failure = handshakeFailure(req) ?? UPGRADE_REQUIRED;
      deps.metrics.upgradeRejected(endpoint, failure.reason);
      for (const [name, value] of Object.entries(failure.headers)) res.setHeader(name, value);
      sendError(res, failure.status, failure.body);
    },

    onUpgrade(req, socket, head) {
      socket.on('error', ignoreSocketError);
      if (missingHost(req)) {
        deps.metrics.httpError('bad_request_400');
        writeRawError(socket, 400, MISSING_HOST_BODY);
        return;
      }
      const path = pathOf(req.url);
      if (path === HEALTH_PATH) {
        writeRaw(socket, 200, HEALTH_RAW_HEADERS, deps.health());
        return;
      }
      if (path === READY_PATH) {
        const { status, body } = deps.readiness();
        writeRaw(socket, status, HEALTH_RAW_HEADERS, body);
        return;
      }
      const endpoint = endpointOf(path);
      if (endpoint === null) {
        deps.metrics.httpError('not_found_404');
        writeRawError(socket, 404, NOT_FOUND_BODY);
        return;
      }
      const admitted = admit(req, endpoint, path, (status) => writeRawError(socket, status));
      if (admitted === null) return;
      const failure = handshakeFailure(req);
      if (failure !== null) {
        deps.cap.release();
        deps.metrics.upgradeRejected(endpoint, failure.reason);
        const extra = Object.entries(failure.headers)
          .map(([name, value]) => `${name}: ${value}\r\n`)
          .join('');
        writeRawError(socket, failure.status, failure.body, extra);
        return;
      }
      // The gate takes `websocket` as one token of a list, as the reference's library does; ws
      // wants the whole value to be it and would answer its own 400.
      req.headers.upgrade = 'websocket';
      // The slot covers the socket's whole life: a failed handshake (ws answers 400/405 and
      // destroys the socket) and a finished WebSocket both end with 'close'.
      let released = false;
      const release = (): void => {
        if (released) return;
        released = true;
        deps.cap.release();
      };
      // 'close' comes once and release() is idempotent: `on` spares the wrapper `once` adds.
      socket.on('close', release);
      deps.wss.handleUpgrade(req, socket, head, (ws) => {
        // From here the WebSocket owns the socket: ws handles its errors and the handler releases
        // the slot when it ends (exactly once), so neither listener nor this request's closures
        // stay alive per connection (docs/performance.md, "Where the targets stand").
        socket.off('error', ignoreSocketError);
        socket.off('close', release);
        deps.onConnection(ws, admitted, releaseSlot);
      });
    },

    /** Requests Node's HTTP parser refused before any route ran: the same answers Node gives by
     * default, counted. */
    onClientError(err, socket) {
      if (socket.destroyed || !socket.writable || err.code === 'ECONNRESET') {
        socket.destroy();
        return;
      }
      let status: 400 | 408 | 431;
      if (err.code === 'HPE_HEADER_OVERFLOW') {
        status = 431;
        deps.metrics.httpError('header_too_large_431');
      } else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
        status = 408;
        deps.metrics.httpError('header_timeout_408');
      } else {
        status = 400;
        deps.metrics.httpError('bad_request_400');
      }
      writeParserError(socket, status);
    },
  };
}

interface HandshakeFailure {
  reason: UpgradeRejection;
  status: number;
  body: string;
  headers: Record<string, string>;
}

const UPGRADE_REQUIRED: HandshakeFailure = {
  reason: 'not_websocket_426',
  status: 426,
  body: 'websocket upgrade required: Connection must contain Upgrade and Upgrade must contain websocket\n',
  headers: { Upgrade: 'websocket' },
};

/** RFC 6455 checks in the reference library's order
 * (docs/decisions.md, "Handshake checks run before `ws`, in the reference library's order"):
 * Connection/Upgrade tokens (426), method (405), version exactly "13" (400), key (400). `ws` accepts version 8 and
 * answers 400 for a non-websocket Upgrade, so the relay checks first. */
function handshakeFailure(req: IncomingMessage): HandshakeFailure | null {
  if (req.httpVersionMajor < 1 || (req.httpVersionMajor === 1 && req.httpVersionMinor < 1)) {
    return { ...UPGRADE_REQUIRED, body: 'websocket handshake requires HTTP/1.1 or later\n' };
  }
  if (!hasToken(req.headers.connection, 'upgrade') || !hasToken(req.headers.upgrade, 'websocket')) {
    return UPGRADE_REQUIRED;
  }
  if (req.method !== 'GET')
    return { reason: 'bad_method_405', status: 405, body: 'method not allowed: use GET\n', headers: { Allow: 'GET' } };
  if (req.headers['sec-websocket-version'] !== '13') {
    return {
      reason: 'bad_version_400',
      status: 400,
      body: 'unsupported Sec-WebSocket-Version: use 13\n',
      headers: { 'Sec-WebSocket-Version': '13' },
    };
  }
  const key = req.headers['sec-websocket-key'];
  if (key === undefined || !/^[+/0-9A-Za-z]{22}==$/.test(key.trim())) {
    return { reason: 'bad_key_400', status: 400, body: 'missing or invalid Sec-WebSocket-Key\n', headers: {} };
  }
  return null;
}

function hasToken(header: string | undefined, token: string): boolean {
  if (header === undefined) return false;
  for (const part of header.split(',')) if (part.trim().toLowerCase() === token) return true;
  return false;
}

/** scheme "://" authority, the head of an absolute-form target (RFC 9112 3.2.2). */
const ABSOLUTE_FORM_HEAD = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/;

/** The path of the request target, up to '?'. An absolute-form target is routed by its path like
 * origin-form, as Go's ServeMux (the reference) routes r.URL.Path; it is '' when it has none. */
function pathOf(url: string | undefined): string {
  if (url === undefined) return '';
  const head = url.startsWith('/') ? null : ABSOLUTE_FORM_HEAD.exec(url);
  const target = head === null ? url : url.slice(head[0].length);
  const q = target.indexOf('?');
  return q < 0 ? target : target.slice(0, q);
}

function endpointOf(path: string): Endpoint | null {
  if (path === SERVER_PATH) return 'server';
  if (path === CLIENT_PATH) return 'client';
  return null;
}

/** Node decodes header bytes as latin1; the protocol's ids and labels are UTF-8. Bytes that are
 * not valid UTF-8 become U+FFFD. */
function headerText(value: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the test is for any byte outside ASCII
  if (!/[^\u0000-\u007f]/.test(value)) return value;
  return Buffer.from(value, 'latin1').toString('utf8');
}
