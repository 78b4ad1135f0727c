// The loopback HTTP listener for `GET /metrics` (--metrics-listen; docs/metrics.md, "The endpoint").
//
// The stock PrometheusExporter server sends a bare `text/plain`, never gzips and answers 200 when
// collection fails, so the exporter runs with preventServerStart and this server serves its output:
//   GET  /metrics  200  text/plain; version=0.0.4; charset=utf-8   (gzip when Accept-Encoding allows)
//   HEAD /metrics  200  same headers, no body
//   other methods on /metrics  405, Allow: GET, HEAD, "method not allowed\n"
//   any other path  404 "404 page not found\n"
//   collection failure  500 "metrics collection failed\n" (no internal detail)
// The path must be exactly /metrics (a query string is ignored); /metrics/ and /metricsx are 404.
// Every response carries Cache-Control: no-store; /metrics responses carry Vary: Accept-Encoding.
// No CORS headers, no redirects, no auth, no TLS: the listener is loopback-only.

import http from 'node:http';
import net from 'node:net';
import zlib from 'node:zlib';
import { promisify } from 'node:util';
import { HEADER_READ_TIMEOUT_MS, IDLE_TIMEOUT_MS, MAX_HEADER_BYTES, REQUEST_TIMEOUT_MS } from '../src/http/limits.js';
import type { Logger } from '../src/log.js';

const gzip = promisify(zlib.gzip);

export interface MetricsServer {
  address(): { host: string; port: number };
  /** Stops listening; requests in flight get `graceMs` (default 2 s) to finish, then every
   * remaining connection is closed. */
  close(graceMs?: number): Promise<void>;
  /**
   * Errors of the listening socket after start (e.g. accept failing with EMFILE). Without a
   * registered listener they are logged as warn `metrics_listener_error` (addr, err) and the listener
   * stays up; the daemon may register one to treat them as a listener failure (shutdown).
   */
  onError(listener: (err: Error) => void): void;
}

export const METRICS_PATH = '/metrics';
/** How long close() lets requests in flight finish before dropping their connections. */
export const CLOSE_GRACE_MS = 2_000;
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
const TEXT_CONTENT_TYPE = 'text/plain; charset=utf-8';

// The public listener's limits, read from the one file that holds them (src/http/limits.ts).
export const METRICS_SERVER_LIMITS = {
  headersTimeout: HEADER_READ_TIMEOUT_MS,
  requestTimeout: REQUEST_TIMEOUT_MS,
  keepAliveTimeout: IDLE_TIMEOUT_MS,
  // How often Node checks the two request timeouts. The public listener checks every 500 ms; this
  // listener has always checked every second, and the house move changes no behaviour.
  connectionsCheckingInterval: 1_000,
  maxHeaderSize: MAX_HEADER_BYTES,
} as const;

const loopback = new net.BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4');
loopback.addAddress('::1', 'ipv6');

/** True for an IPv4 address in 127.0.0.0/8 or the IPv6 loopback ::1 (any spelling); never a hostname. */
export function isLoopbackIpLiteral(host: string): boolean {
  const family = net.isIP(host);
  if (family === 4) return loopback.check(host, 'ipv4');
  if (family === 6) return loopback.check(host, 'ipv6');
  return false;
}

export async function startMetricsServer(
  host: string,
  port: number,
  scrape: () => Promise<string>,
  log?: Logger,
): Promise<MetricsServer> {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  // The caller validates --metrics-listen; this is defence in depth.
  if (!isLoopbackIpLiteral(bare)) {
    throw new Error(
      `metrics listener refuses non-loopback host ${JSON.stringify(host)}: must be an IP literal in 127.0.0.0/8 or ::1`,
    );
  }
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new Error(`metrics listener port out of range: ${port}`);
  }

  const state = { closing: false };
  const server = http.createServer({
    headersTimeout: METRICS_SERVER_LIMITS.headersTimeout,
    requestTimeout: METRICS_SERVER_LIMITS.requestTimeout,
    connectionsCheckingInterval: METRICS_SERVER_LIMITS.connectionsCheckingInterval,
    maxHeaderSize: METRICS_SERVER_LIMITS.maxHeaderSize,
  });
  server.keepAliveTimeout = METRICS_SERVER_LIMITS.keepAliveTimeout;

  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    handle(req, res, scrape, state).catch(() => {
      // handle() answers every error itself; this only guards against a throw while writing.
      if (!res.headersSent) {
        sendText(res, 500, 'metrics collection failed\n', state);
      } else {
        res.destroy();
      }
    });
  });
  // Malformed requests, oversized headers (431) and header/request timeouts (408) are answered by
  // Node's default clientError handling.

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen({ host: bare, port }, () => {
      server.off('error', onError);
      resolve();
    });
  });

  const errorListeners: Array<(err: Error) => void> = [];
  server.on('error', (err: Error) => {
    if (errorListeners.length === 0) {
      const bound = server.address();
      let addr = bare;
      if (bound !== null && typeof bound !== 'string') {
        addr = net.isIPv6(bound.address) ? `[${bound.address}]:${bound.port}` : `${bound.address}:${bound.port}`;
      }
      log?.warn('metrics_listener_error', { addr, err: err.message.slice(0, 200) });
      return;
    }
    for (const listener of errorListeners) listener(err);
  });

  let closed: Promise<void> | undefined;
  return {
    address() {
      const addr = server.address();
      if (addr === null || typeof addr === 'string') return { host: bare, port };
      return { host: addr.address, port: addr.port };
    },
    close(graceMs = CLOSE_GRACE_MS) {
      closed ??= new Promise<void>((resolve) => {
        state.closing = true;
        server.close(() => resolve());
        // Keep-alive sockets with no request in flight would otherwise hold close() open for up to
        // keepAliveTimeout; sockets mid-request finish their response (sent with Connection: close).
        server.closeIdleConnections();
        // A client that never completes its request must not hold the shutdown open.
        setTimeout(() => server.closeAllConnections(), graceMs).unref();
      });
      return closed;
    },
    onError(listener: (err: Error) => void) {
      errorListeners.push(listener);
    },
  };
}

async function handle(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  scrape: () => Promise<string>,
  state: ServerState,
): Promise<void> {
  res.setHeader('Cache-Control', 'no-store');
  if (requestPath(req.url) !== METRICS_PATH) {
    sendText(res, 404, '404 page not found\n', state);
    return;
  }
  res.setHeader('Vary', 'Accept-Encoding');
  const method = req.method ?? '';
  if (method !== 'GET' && method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    sendText(res, 405, 'method not allowed\n', state);
    return;
  }

  let body: string;
  try {
    body = await scrape();
  } catch {
    sendText(res, 500, 'metrics collection failed\n', state);
    return;
  }
  if (!body.endsWith('\n')) body += '\n'; // "# no registered metrics" comes without one

  let payload: Buffer = Buffer.from(body, 'utf8');
  if (acceptsGzip(req.headers['accept-encoding'])) {
    payload = await gzip(payload);
    res.setHeader('Content-Encoding', 'gzip');
  }
  res.statusCode = 200;
  res.setHeader('Content-Type', METRICS_CONTENT_TYPE);
  res.setHeader('Content-Length', payload.length);
  if (state.closing) res.setHeader('Connection', 'close');
  if (method === 'HEAD') res.end();
  else res.end(payload);
}

interface ServerState {
  /** close() was called: responses still being produced are sent with Connection: close. */
  closing: boolean;
}

function sendText(res: http.ServerResponse, status: number, text: string, state: ServerState): void {
  const payload = Buffer.from(text, 'utf8');
  res.statusCode = status;
  res.setHeader('Content-Type', TEXT_CONTENT_TYPE);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Content-Length', payload.length);
  if (state.closing) res.setHeader('Connection', 'close');
  res.end(payload);
}

/** The path of the request target: origin-form up to '?', or the path of an absolute-form target. */
function requestPath(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  if (url.startsWith('/')) {
    const q = url.indexOf('?');
    return q < 0 ? url : url.slice(0, q);
  }
  if (/^https?:\/\//i.test(url)) {
    try {
      return new URL(url).pathname;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/**
 * Whether an Accept-Encoding header allows gzip (RFC 9110 section 12.5.3): an explicit `gzip` (or
 * `x-gzip`) entry decides by its q-value; otherwise `*` decides; otherwise no. `q=0` means "not
 * acceptable"; a malformed q-value makes its entry unacceptable (an uncompressed answer is always safe).
 */
export function acceptsGzip(header: string | string[] | undefined): boolean {
  if (header === undefined) return false;
  const value = Array.isArray(header) ? header.join(',') : header;
  let explicit: number | undefined;
  let wildcard: number | undefined;
  for (const part of value.split(',')) {
    const [codingRaw, ...params] = part.split(';');
    const coding = codingRaw!.trim().toLowerCase();
    if (coding === '') continue;
    let q = 1;
    for (const param of params) {
      const eq = param.indexOf('=');
      if (eq < 0) continue;
      if (param.slice(0, eq).trim().toLowerCase() !== 'q') continue;
      const raw = param.slice(eq + 1).trim();
      q = /^(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)$/.test(raw) ? Number(raw) : 0;
    }
    if (coding === 'gzip' || coding === 'x-gzip') explicit = Math.max(explicit ?? 0, q);
    else if (coding === '*') wildcard = Math.max(wildcard ?? 0, q);
  }
  if (explicit !== undefined) return explicit > 0;
  if (wildcard !== undefined) return wildcard > 0;
  return false;
}
