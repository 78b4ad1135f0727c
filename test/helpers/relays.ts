// Real relays on 127.0.0.1 for tests: the same Relay, listeners, telemetry and /metrics server the
// daemon uses, on ephemeral ports, with short timings and a captured log; ws clients that record
// what they receive; and useRelays(), the fixture that closes every relay and client a test made.

import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { afterEach } from 'vitest';
import WebSocket from 'ws';
import { buildTelemetry, type MetricsServer, type Telemetry } from '../../telemetry/index.js';
import { closeServer, createPlainServer, listen } from '../../src/http/listeners.js';
import { createLogger } from '../../src/log.js';
import { DEFAULT_RELAY_OPTIONS } from '../../src/config/defaults.js';
import { Relay, type RelayOptions } from '../../src/relay.js';
import { sampleValue } from './scrape.js';
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

/** The keys of the /healthz body, in the order the relay writes them (docs/operations.md, health and
 * readiness checks). */
export const HEALTHZ_KEYS = [
  'status',
  'version',
  'connected_binaries',
  'connected_phones',
  'uptime_seconds',
  'binaries_since_boot',
  'phones_since_boot',
  'frames_forwarded_since_boot',
];

// ---- The captured log ----

/** Every log line of the relay with this msg, in order. */
export function logsOf(r: TestRelay, msg: string): LogLine[] {
  return r.logs.filter((l) => l.msg === msg);
}

/** Fields of a log line other than time/level/msg. */
export function logFields(line: LogLine): Record<string, unknown> {
  const { time: _t, level: _l, msg: _m, ...rest } = line;
  return rest;
}

/** Waits for the first log line with this msg that `match` accepts. */
export function waitLog(
  r: TestRelay,
  msg: string,
  match: (l: LogLine) => boolean = () => true,
  timeoutMs = 3_000,
): Promise<LogLine> {
  return waitFor(() => r.logs.find((l) => l.msg === msg && match(l)), timeoutMs, `log line ${msg}`);
}

// ---- Relay internals the tests may read (never write): the registry's maps and the cap ----

interface RegistryInternals {
  binaries: Map<string, unknown>;
  phones: Map<string, unknown[]>;
  graces: Map<string, unknown>;
}

/** Sizes of every relay-side structure that must return to zero when everybody left. */
export function relayState(r: TestRelay): {
  binaries: number;
  phoneLists: number;
  graces: number;
  counts: { binaries: number; phones: number };
  capUsed: number;
  live: number;
} {
  const reg = r.relay.registry as unknown as RegistryInternals;
  return {
    binaries: reg.binaries.size,
    phoneLists: reg.phones.size,
    graces: reg.graces.size,
    counts: r.relay.counts(),
    capUsed: r.relay.cap.used,
    live: r.relay.liveConnections,
  };
}

export function isEmpty(state: ReturnType<typeof relayState>): boolean {
  return (
    state.binaries === 0 &&
    state.phoneLists === 0 &&
    state.graces === 0 &&
    state.counts.binaries === 0 &&
    state.counts.phones === 0 &&
    state.capUsed === 0 &&
    state.live === 0
  );
}

// ---- The fixture ----

/** Anything a test opens towards a relay and must not outlive it. */
type Closable = TestClient | WebSocket | Socket | { destroy(): void };

export interface Relays {
  /** Starts a relay (TEST_RELAY_OPTIONS plus `overrides`), closed after the test. */
  boot(overrides?: Partial<RelayOptions>, onLog?: (line: LogLine) => void): Promise<TestRelay>;
  /** Registers a client, ws socket, raw socket or RawWs to be torn down after the test; returns it. */
  track<T extends Closable>(client: T): T;
  /** connectBinary, tracked. */
  binary(r: TestRelay, serverId: string, extra?: Record<string, string>): Promise<TestClient>;
  /** connectPhone, tracked. */
  phone(r: TestRelay, serverId: string, extra?: Record<string, string>): Promise<TestClient>;
  /** Runs `fn` after the test, before the clients are torn down (timers, intervals). */
  defer(fn: () => void): void;
  /** A TestClient on `path` with exactly these headers (not awaited), tracked. */
  client(r: TestRelay, path: string, headers: Record<string, string>, options?: WebSocket.ClientOptions): TestClient;
}

function teardown(c: Closable): void {
  if (c instanceof TestClient) c.ws.terminate();
  else if (c instanceof WebSocket) c.terminate();
  else c.destroy();
}

/** Call once at the top of a test file (or describe block): every relay booted and every client
 * tracked through it is terminated and closed in afterEach, also when the test failed. */
export function useRelays(): Relays {
  const relays: TestRelay[] = [];
  const clients: Closable[] = [];
  const deferred: (() => void)[] = [];
  afterEach(async () => {
    for (const fn of deferred.splice(0)) fn();
    for (const c of clients.splice(0)) teardown(c);
    await Promise.all(relays.splice(0).map((r) => r.close()));
  });
  const track = <T extends Closable>(c: T): T => {
    clients.push(c);
    return c;
  };
  return {
    async boot(overrides = {}, onLog) {
      const r = await startRelay(overrides, onLog);
      relays.push(r);
      return r;
    },
    track,
    defer(fn) {
      deferred.push(fn);
    },
    async binary(r, serverId, extra = {}) {
      return track(await connectBinary(r, serverId, extra));
    },
    async phone(r, serverId, extra = {}) {
      return track(await connectPhone(r, serverId, extra));
    },
    client(r, path, headers, options = {}) {
      return track(new TestClient(`${r.wsUrl}${path}`, headers, options));
    },
  };
}
