// A real relay on 127.0.0.1 for tests: the same Relay, listeners, telemetry and /metrics server the
// daemon uses, on ephemeral ports, with short timings and a captured log.

import type { Server } from 'node:http';
import { request as httpRequest } from 'node:http';
import { connect as netConnect } from 'node:net';
import WebSocket from 'ws';
import { buildTelemetry, type MetricsServer, type Telemetry } from '../../telemetry/index.js';
import { closeServer, createPlainServer, listen } from '../../src/http/listeners.js';
import { createLogger } from '../../src/log.js';
import { DEFAULT_RELAY_OPTIONS } from '../../src/config/defaults.js';
import { Relay, type RelayOptions } from '../../src/relay.js';
import { waitFor, withTimeout } from './wait.js';

export interface LogLine {
  level: string;
  msg: string;
  [key: string]: unknown;
}

export interface TestRelay {
  relay: Relay;
  server: Server;
  telemetry: Telemetry;
  metricsServer: MetricsServer;
  port: number;
  /** http://127.0.0.1:<port> */
  httpUrl: string;
  /** ws://127.0.0.1:<port> */
  wsUrl: string;
  metricsUrl: string;
  /** Every log line so far, parsed (JSON format). */
  logs: LogLine[];
  /** Raw log text. */
  logText(): string;
  scrape(): Promise<string>;
  /** Value of one sample line, e.g. metric('pyrycode_relay_connected_phones') or with labels. */
  metric(series: string): Promise<number>;
  close(): Promise<void>;
}

/** Short, test-friendly timings; every option can be overridden. */
export const TEST_RELAY_OPTIONS: RelayOptions = {
  ...DEFAULT_RELAY_OPTIONS,
  gracePeriodMs: 1_000,
  heartbeatIntervalMs: 5_000,
  probeTimeoutMs: 500,
  maxConnections: 200,
  rateLimitBurst: 1_000,
  rateLimitIntervalMs: 6_000,
};

/** `onLog`, when given, receives every log line instead of the relay keeping them (`logs` and
 * `logText()` stay empty): a soak of many connections must not measure the test's own buffer. */
export async function startRelay(
  overrides: Partial<RelayOptions> = {},
  onLog?: (line: LogLine) => void,
): Promise<TestRelay> {
  const lines: string[] = [];
  const logs: LogLine[] = [];
  const log = createLogger('json', {
    write(line: string) {
      if (onLog !== undefined) {
        onLog(JSON.parse(line) as LogLine);
        return;
      }
      lines.push(line);
      logs.push(JSON.parse(line) as LogLine);
    },
  });
  const telemetry = buildTelemetry({
    serviceVersion: 'test',
    env: {},
    prometheus: true,
    otlp: null,
    targetInfo: false,
    log,
  });
  const relay = new Relay({ ...TEST_RELAY_OPTIONS, ...overrides }, telemetry.meter, log);
  const server = createPlainServer();
  relay.attach(server);
  const { port } = await listen(server, '127.0.0.1', 0);
  const metricsServer = await telemetry.startMetricsServer('127.0.0.1', 0);
  const metricsAddress = metricsServer.address();
  const scrape = (): Promise<string> => telemetry.scrape();
  let closed = false;
  return {
    relay,
    server,
    telemetry,
    metricsServer,
    port,
    httpUrl: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}`,
    metricsUrl: `http://127.0.0.1:${metricsAddress.port}/metrics`,
    logs,
    logText: () => lines.join(''),
    scrape,
    async metric(series: string) {
      return sampleValue(await scrape(), series);
    },
    async close() {
      if (closed) return;
      closed = true;
      const closing = closeServer(server);
      await relay.drain(2_000);
      server.closeAllConnections();
      await closing;
      await metricsServer.close();
      await telemetry.shutdown(1_000);
    },
  };
}

/** The value of the sample whose series text (name plus labels) is exactly `series`. */
export function sampleValue(text: string, series: string): number {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    if (line.slice(0, space) === series) return Number(line.slice(space + 1));
  }
  throw new Error(`series ${series} not in scrape:\n${text}`);
}

// ---- WebSocket clients ----

export interface Closed {
  code: number;
  reason: string;
}

/** A ws client that records everything it receives and how it closed. */
export class TestClient {
  readonly messages: string[] = [];
  closed: Closed | undefined;
  readonly ws: WebSocket;
  private readonly opened: Promise<void>;
  private readonly closedPromise: Promise<Closed>;

  constructor(url: string, headers: Record<string, string>, options: WebSocket.ClientOptions = {}) {
    this.ws = new WebSocket(url, { headers, perMessageDeflate: false, ...options });
    this.ws.on('message', (data: Buffer) => this.messages.push(data.toString('utf8')));
    this.ws.on('error', () => {});
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('unexpected-response', (_req, res) => reject(new Error(`unexpected HTTP ${res.statusCode}`)));
      this.ws.once('error', reject);
    });
    this.opened.catch(() => {});
    this.closedPromise = new Promise((resolve) => {
      this.ws.once('close', (code: number, reason: Buffer) => {
        this.closed = { code, reason: reason.toString('utf8') };
        resolve(this.closed);
      });
    });
  }

  open(timeoutMs = 3_000): Promise<void> {
    return withTimeout(this.opened, timeoutMs, 'WebSocket open');
  }

  /** Waits for the close and returns the code and reason the client saw. */
  waitClose(timeoutMs = 5_000): Promise<Closed> {
    return withTimeout(this.closedPromise, timeoutMs, 'WebSocket close');
  }

  /** Waits until at least `count` messages arrived; returns message[count-1]. */
  async message(count: number, timeoutMs = 3_000): Promise<string> {
    await waitFor(() => this.messages.length >= count, timeoutMs, `message #${count}`);
    return this.messages[count - 1]!;
  }

  send(data: string | Buffer): void {
    this.ws.send(data);
  }

  close(code?: number, reason?: string): void {
    this.ws.close(code, reason);
  }
}

export function binaryHeaders(serverId: string, extra: Record<string, string> = {}): Record<string, string> {
  return { 'X-Pyrycode-Server': serverId, 'X-Pyrycode-Version': '1.2.3', 'User-Agent': 'pyry-test/1', ...extra };
}

export function phoneHeaders(serverId: string, extra: Record<string, string> = {}): Record<string, string> {
  return { 'X-Pyrycode-Server': serverId, 'X-Pyrycode-Token': 'tok-secret', 'User-Agent': 'phone-test/1', ...extra };
}

/** Connects a binary and waits until it holds the slot. */
export async function connectBinary(
  relay: TestRelay,
  serverId: string,
  extra: Record<string, string> = {},
): Promise<TestClient> {
  const client = new TestClient(`${relay.wsUrl}/v1/server`, binaryHeaders(serverId, extra));
  await client.open();
  await waitFor(
    () => relay.relay.registry.binaryFor(serverId) !== undefined && !client.closed,
    3_000,
    `claim of ${serverId}`,
  );
  return client;
}

/** Connects a phone, waits for the open and its registration; returns it with its conn_id. */
export async function connectPhone(
  relay: TestRelay,
  serverId: string,
  extra: Record<string, string> = {},
): Promise<TestClient> {
  const before = relay.relay.metrics.phonesSinceBoot;
  const client = new TestClient(`${relay.wsUrl}/v1/client`, phoneHeaders(serverId, extra));
  await client.open();
  await waitFor(
    () => relay.relay.metrics.phonesSinceBoot > before || client.closed,
    3_000,
    `registration on ${serverId}`,
  );
  return client;
}

/** Sends a frame from the phone and returns the envelope the binary got for it. */
export async function phoneConnId(phone: TestClient, binary: TestClient): Promise<string> {
  const count = binary.messages.length + 1;
  phone.send('{"probe":true}');
  const envelope = JSON.parse(await binary.message(count)) as { conn_id: string };
  return envelope.conn_id;
}

// ---- Raw HTTP ----

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

/** An upgrade request's HTTP answer (status and body) when the relay refuses it. */
export async function upgradeStatus(
  relay: TestRelay,
  path: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const ws = new WebSocket(`${relay.wsUrl}${path}`, { headers, perMessageDeflate: false });
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
