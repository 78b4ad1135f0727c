// /readyz, the ready gauge, --drain-delay and --metrics-runtime (docs/metrics.md;
// docs/decisions.md, "`/readyz` and `--drain-delay`"). In-process relays for the endpoint itself, the BUILT daemon
// (`npx tsc -p tsconfig.json` first) for the signal handling and the runtime series.

import { existsSync } from 'node:fs';
import type { Socket } from 'node:net';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, DAEMON_MAIN, freePort, startDaemon, type DaemonHandle } from '../helpers/daemon.js';
import {
  binaryHeaders,
  connectBinary,
  connectPhone,
  httpGet,
  phoneHeaders,
  rawExchange,
  sampleValue,
  startRelay,
  TestClient,
  upgradeStatus,
  type RawResponse,
  type TestRelay,
} from '../helpers/relay.js';
import { waitFor } from '../helpers/wait.js';

const READY_BODY = '{"status":"ready"}';
const DRAINING_BODY = '{"status":"draining"}';
const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'];

let relay: TestRelay | undefined;
afterEach(async () => {
  await relay?.close();
  relay = undefined;
});

function expectReadyHeaders(res: RawResponse): void {
  expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
  expect(res.headers['cache-control']).toBe('no-store');
}

function underlying(client: TestClient): Socket {
  return (client.ws as unknown as { _socket: Socket })._socket;
}

describe('/readyz on the public listener (in-process relay)', () => {
  it('answers 200 {"status":"ready"} with JSON no-store headers, for any method and for an upgrade request', async () => {
    relay = await startRelay();
    for (const method of METHODS) {
      const res = await httpGet(`${relay.httpUrl}/readyz`, { method });
      expect(res.status, method).toBe(200);
      expect(res.body, method).toBe(READY_BODY);
      expectReadyHeaders(res);
    }
    const head = await httpGet(`${relay.httpUrl}/readyz`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
    expectReadyHeaders(head);
    // A query string does not change the route.
    expect((await httpGet(`${relay.httpUrl}/readyz?probe=lb`)).body).toBe(READY_BODY);
    // An upgrade request to /readyz gets the same answer, not a WebSocket.
    const upgrade = await upgradeStatus(relay, '/readyz', {});
    expect(upgrade.status).toBe(200);
    expect(upgrade.body).toBe(READY_BODY);
    expect(upgrade.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(upgrade.headers['cache-control']).toBe('no-store');
    // Not an error, not an upgrade attempt.
    const text = await relay.scrape();
    expect(sampleValue(text, 'pyrycode_relay_http_errors_total{reason="not_found_404"}')).toBe(0);
    expect(sampleValue(text, 'pyrycode_relay_ws_upgrade_attempts_total{endpoint="server",outcome="accept"}')).toBe(0);
    expect(relay.relay.liveConnections).toBe(0);
  });

  it('is not rate limited: keeps answering 200 once the per-IP bucket is exhausted', async () => {
    relay = await startRelay({ rateLimitBurst: 1, rateLimitIntervalMs: 60_000 });
    // The only token goes to a header-gate failure; the next upgrade is refused 429.
    expect((await upgradeStatus(relay, '/v1/client', { 'User-Agent': 'x' })).status).toBe(400);
    expect((await upgradeStatus(relay, '/v1/server', binaryHeaders('rl'))).status).toBe(429);
    for (let i = 0; i < 25; i++) {
      const res = await httpGet(`${relay.httpUrl}/readyz`);
      expect(res.status).toBe(200);
      expect(res.body).toBe(READY_BODY);
    }
    expect((await upgradeStatus(relay, '/readyz', {})).status).toBe(200);
    expect(
      sampleValue(
        await relay.scrape(),
        'pyrycode_relay_ws_upgrade_attempts_total{endpoint="server",outcome="reject_rate_limit"}',
      ),
    ).toBe(1);
  });

  it('answers 503 {"status":"draining"} after markNotReady(), while connections are still accepted', async () => {
    relay = await startRelay();
    const binary = await connectBinary(relay, 'not-ready');
    relay.relay.markNotReady();
    for (const method of ['GET', 'POST', 'HEAD']) {
      const res = await httpGet(`${relay.httpUrl}/readyz`, { method });
      expect(res.status, method).toBe(503);
      expect(res.body, method).toBe(method === 'HEAD' ? '' : DRAINING_BODY);
      expectReadyHeaders(res);
    }
    const upgrade = await upgradeStatus(relay, '/readyz', {});
    expect(upgrade).toMatchObject({ status: 503, body: DRAINING_BODY });
    expect(await relay.metric('pyrycode_relay_ready')).toBe(0);
    // Only readiness failed: /healthz is still 200 and a new phone registers.
    expect((await httpGet(`${relay.httpUrl}/healthz`)).status).toBe(200);
    const phone = await connectPhone(relay, 'not-ready');
    expect(phone.closed).toBeUndefined();
    expect(binary.closed).toBeUndefined();
  });

  it('answers 503 during a drain (and after it)', async () => {
    relay = await startRelay();
    await connectBinary(relay, 'drain-ready');
    const phone = await connectPhone(relay, 'drain-ready');
    expect((await httpGet(`${relay.httpUrl}/readyz`)).status).toBe(200);
    // The phone does not read the relay's close frame until resumed: the drain stays open.
    underlying(phone).pause();
    let finished = false;
    const draining = relay.relay.drain(5_000).then((complete) => {
      finished = true;
      return complete;
    });
    const during = await httpGet(`${relay.httpUrl}/readyz`);
    expect(finished, 'the drain was still running').toBe(false);
    expect(during.status).toBe(503);
    expect(during.body).toBe(DRAINING_BODY);
    expectReadyHeaders(during);
    expect(await relay.metric('pyrycode_relay_ready')).toBe(0);
    underlying(phone).resume();
    expect(await draining).toBe(true);
    const after = await httpGet(`${relay.httpUrl}/readyz`);
    expect(after).toMatchObject({ status: 503, body: DRAINING_BODY });
    // /readyz answers on a raw upgrade socket too.
    const raw = await rawExchange(
      relay.port,
      'GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
    );
    expect(raw).toMatch(/^HTTP\/1\.1 503 /);
    expect(raw.endsWith(DRAINING_BODY)).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// The built daemon
// ---------------------------------------------------------------------------------------------

/** A text-format log line's msg, as the logger writes it (quoted when it has spaces). */
function textMsg(event: string): string {
  return /[\s="\\]/.test(event) ? `msg=${JSON.stringify(event)}` : `msg=${event}`;
}

interface Running {
  d: DaemonHandle;
  port: number;
  metricsPort: number;
  url: string;
  ws: string;
  metrics: string;
}

async function startRunning(args: string[]): Promise<Running> {
  const port = await freePort();
  const metricsPort = await freePort();
  const d = startDaemon(
    ['--insecure-listen', `127.0.0.1:${port}`, '--metrics-listen', `127.0.0.1:${metricsPort}`, ...args],
    cleanEnv(),
  );
  try {
    await d.waitStderr(textMsg('starting'), 10_000);
    await waitFor(
      async () => (await httpGet(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.status === 200,
      10_000,
      'daemon /healthz',
      25,
    );
  } catch (err) {
    await d.stop();
    throw err;
  }
  return {
    d,
    port,
    metricsPort,
    url: `http://127.0.0.1:${port}`,
    ws: `ws://127.0.0.1:${port}`,
    metrics: `http://127.0.0.1:${metricsPort}/metrics`,
  };
}

/** Connects a binary to the daemon and waits until /healthz counts it. */
async function daemonBinary(run: Running, serverId: string, clients: TestClient[]): Promise<TestClient> {
  const binary = new TestClient(`${run.ws}/v1/server`, binaryHeaders(serverId));
  clients.push(binary);
  await binary.open();
  await waitFor(
    async () =>
      (JSON.parse((await httpGet(`${run.url}/healthz`)).body) as { connected_binaries: number }).connected_binaries >=
      1,
    3_000,
    'the daemon to count the binary',
  );
  return binary;
}

const RUNTIME_SERIES = [
  'pyrycode_relay_runtime_active_handles',
  'pyrycode_relay_runtime_event_loop_delay_max_seconds',
  'pyrycode_relay_runtime_event_loop_delay_p50_seconds',
  'pyrycode_relay_runtime_event_loop_delay_p99_seconds',
  'pyrycode_relay_runtime_heap_total_bytes',
  'pyrycode_relay_runtime_heap_used_bytes',
  'pyrycode_relay_runtime_rss_bytes',
];

describe('daemon: --drain-delay and --metrics-runtime', () => {
  beforeAll(() => {
    if (!existsSync(DAEMON_MAIN)) throw new Error(`${DAEMON_MAIN} is missing: run npx tsc -p tsconfig.json first`);
  });

  it('--drain-delay 1s: SIGTERM fails /readyz at once, keeps serving (a NEW phone registers), then closes both with 1001 and exits 0', async () => {
    const run = await startRunning(['--drain-delay', '1s', '--shutdown-timeout', '3s']);
    const clients: TestClient[] = [];
    try {
      const binary = await daemonBinary(run, 'dd-1', clients);
      let binaryClosedAt = 0;
      binary.ws.once('close', () => (binaryClosedAt = Date.now()));
      const ready = await httpGet(`${run.url}/readyz`);
      expect(ready).toMatchObject({ status: 200, body: READY_BODY });
      expect(sampleValue((await httpGet(run.metrics)).body, 'pyrycode_relay_ready')).toBe(1);

      const t0 = Date.now();
      run.d.child.kill('SIGTERM');
      await waitFor(
        async () => (await httpGet(`${run.url}/readyz`)).status === 503,
        500,
        '/readyz to fail right after SIGTERM',
        10,
      );
      const failedAfter = Date.now() - t0;
      expect(failedAfter).toBeLessThan(500);
      const draining = await httpGet(`${run.url}/readyz`);
      expect(draining).toMatchObject({ status: 503, body: DRAINING_BODY });
      expectReadyHeaders(draining);
      expect(sampleValue((await httpGet(run.metrics)).body, 'pyrycode_relay_ready')).toBe(0);

      // During the delay a NEW phone registers for the binary and traffic flows both ways.
      const phone = new TestClient(`${run.ws}/v1/client`, phoneHeaders('dd-1'));
      clients.push(phone);
      await phone.open();
      phone.send('{"during":"delay"}');
      const envelope = await binary.message(1);
      const connId = (JSON.parse(envelope) as { conn_id: string }).conn_id;
      expect(envelope).toBe(`{"conn_id":"${connId}","frame":{"during":"delay"}}`);
      binary.send(`{"conn_id":"${connId}","frame":{"still":"served"}}`);
      expect(await phone.message(1)).toBe('{"still":"served"}');
      expect(binary.closed, `binary closed ${Date.now() - t0} ms after SIGTERM`).toBeUndefined();
      expect(phone.closed).toBeUndefined();

      // Then both get 1001, no earlier than the delay.
      expect(await phone.waitClose(4_000)).toEqual({ code: 1001, reason: 'shutting down' });
      expect(await binary.waitClose(4_000)).toEqual({ code: 1001, reason: 'shutting down' });
      expect(binaryClosedAt - t0).toBeGreaterThanOrEqual(950);
      expect(binaryClosedAt - t0).toBeLessThan(2_500);
      expect(await run.d.waitExit(5_000)).toEqual({ code: 0, signal: null });

      const err = run.d.stderr();
      const signalLine = err.indexOf(textMsg('shutdown signal received; draining'));
      const delayLine = err.indexOf(textMsg('readiness failed; waiting before closing peers'));
      const completeLine = err.indexOf(textMsg('shutdown complete'));
      expect(signalLine, err).toBeGreaterThanOrEqual(0);
      expect(delayLine, err).toBeGreaterThan(signalLine);
      expect(completeLine, err).toBeGreaterThan(delayLine);
      expect(err).toMatch(/msg="readiness failed; waiting before closing peers" duration=1s/);
      expect(err).not.toContain('drain incomplete');
    } finally {
      for (const c of clients) c.ws.terminate();
      await run.d.stop();
    }
  });

  it('--drain-delay 0 (default): SIGTERM closes peers at once; without --metrics-runtime no runtime series', async () => {
    const run = await startRunning(['--shutdown-timeout', '3s']);
    const clients: TestClient[] = [];
    try {
      const scrape = (await httpGet(run.metrics)).body;
      expect(sampleValue(scrape, 'pyrycode_relay_ready')).toBe(1);
      expect(scrape).not.toContain('pyrycode_relay_runtime_');
      const binary = await daemonBinary(run, 'dd-0', clients);
      const t0 = Date.now();
      run.d.child.kill('SIGTERM');
      expect(await binary.waitClose(3_000)).toEqual({ code: 1001, reason: 'shutting down' });
      expect(Date.now() - t0).toBeLessThan(700);
      expect(await run.d.waitExit(5_000)).toEqual({ code: 0, signal: null });
      const err = run.d.stderr();
      expect(err).toContain(textMsg('shutdown signal received; draining'));
      expect(err).toContain(textMsg('shutdown complete'));
      expect(err).not.toContain('readiness failed');
    } finally {
      for (const c of clients) c.ws.terminate();
      await run.d.stop();
    }
  });

  it('--metrics-runtime adds the 7 runtime gauges with sane values', async () => {
    const run = await startRunning(['--metrics-runtime', '--shutdown-timeout', '3s']);
    const clients: TestClient[] = [];
    try {
      await daemonBinary(run, 'rt-1', clients);
      const res = await httpGet(run.metrics);
      expect(res.status).toBe(200);
      const text = res.body;
      const present = [
        ...new Set(
          text
            .split('\n')
            .filter((l) => l.startsWith('pyrycode_relay_runtime_'))
            .map((l) => l.split(/[ {]/)[0]!),
        ),
      ];
      expect(present.sort()).toEqual(RUNTIME_SERIES);
      for (const name of RUNTIME_SERIES) {
        expect(text, name).toContain(`# TYPE ${name} gauge`);
        const v = sampleValue(text, name);
        expect(Number.isFinite(v), name).toBe(true);
        expect(v, name).toBeGreaterThanOrEqual(0);
      }
      const v = (name: string): number => sampleValue(text, `pyrycode_relay_runtime_${name}`);
      expect(v('rss_bytes')).toBeGreaterThan(10 * 1024 * 1024);
      expect(v('heap_used_bytes')).toBeGreaterThan(0);
      expect(v('heap_total_bytes')).toBeGreaterThanOrEqual(v('heap_used_bytes'));
      expect(v('rss_bytes')).toBeGreaterThan(v('heap_used_bytes'));
      // Two listeners and a WebSocket at least.
      expect(v('active_handles')).toBeGreaterThanOrEqual(2);
      expect(Number.isInteger(v('active_handles'))).toBe(true);
      expect(v('event_loop_delay_p50_seconds')).toBeLessThanOrEqual(v('event_loop_delay_p99_seconds'));
      expect(v('event_loop_delay_p99_seconds')).toBeLessThanOrEqual(v('event_loop_delay_max_seconds'));
      expect(v('event_loop_delay_max_seconds')).toBeLessThan(10);
      run.d.child.kill('SIGTERM');
      expect(await run.d.waitExit(5_000)).toEqual({ code: 0, signal: null });
    } finally {
      for (const c of clients) c.ws.terminate();
      await run.d.stop();
    }
  });
});
