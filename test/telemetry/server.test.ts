import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import zlib from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger, type Logger } from '../../src/log.js';
import { buildTelemetry, type Telemetry, type TelemetryOptions } from '../../telemetry/index.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { acceptsGzip, isLoopbackIpLiteral, type MetricsServer } from '../../telemetry/metrics-server.js';

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One real HTTP request without an agent (so no connection reuse and no automatic decompression). */
function request(
  port: number,
  path: string,
  options: { method?: string; headers?: Record<string, string>; agent?: http.Agent; host?: string } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: options.host ?? '127.0.0.1',
        port,
        path,
        method: options.method ?? 'GET',
        headers: options.headers,
        agent: options.agent ?? false,
        timeout: 5_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`request ${path} timed out after 5 s`)));
    req.on('error', reject);
    req.end();
  });
}

function captureLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: createLogger('json', { write: (line: string) => lines.push(line) }), lines };
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

function build(overrides: Partial<TelemetryOptions> = {}): Telemetry {
  const telemetry = buildTelemetry({
    serviceVersion: '1.0.0-test',
    env: {},
    prometheus: true,
    otlp: null,
    targetInfo: false,
    log: captureLogger().log,
    ...overrides,
  });
  cleanups.push(() => telemetry.shutdown(2_000));
  return telemetry;
}

async function serve(telemetry: Telemetry): Promise<{ server: MetricsServer; port: number }> {
  const server = await telemetry.startMetricsServer('127.0.0.1', 0);
  cleanups.push(() => server.close());
  return { server, port: server.address().port };
}

/** The fixture of the brief: a labelled counter and an observable gauge reading a variable. */
function instrument(telemetry: Telemetry): { setGauge(v: number): void } {
  let gaugeValue = 7;
  const counter = telemetry.meter.createCounter('pyrycode_relay_test_total', { description: 'Test HELP text.' });
  counter.add(0, { direction: 'a' });
  counter.add(3, { direction: 'b' });
  const gauge = telemetry.meter.createObservableGauge('pyrycode_relay_test_gauge', { description: 'Test gauge HELP.' });
  gauge.addCallback((result) => result.observe(gaugeValue));
  return { setGauge: (v) => (gaugeValue = v) };
}

function expectedBody(gauge: number): string {
  return [
    '# HELP pyrycode_relay_test_total Test HELP text.',
    '# TYPE pyrycode_relay_test_total counter',
    'pyrycode_relay_test_total{direction="a"} 0',
    'pyrycode_relay_test_total{direction="b"} 3',
    '# HELP pyrycode_relay_test_gauge Test gauge HELP.',
    '# TYPE pyrycode_relay_test_gauge gauge',
    `pyrycode_relay_test_gauge ${gauge}`,
    '',
  ].join('\n');
}

describe('GET /metrics', () => {
  it('serves the exact exposition with the Prometheus 0.0.4 content type', async () => {
    const telemetry = build();
    instrument(telemetry);
    const { port } = await serve(telemetry);

    const reply = await request(port, '/metrics');
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(reply.headers['cache-control']).toBe('no-store');
    expect(reply.headers['vary']).toBe('Accept-Encoding');
    expect(reply.headers['content-encoding']).toBeUndefined();
    expect(Number(reply.headers['content-length'])).toBe(reply.body.length);
    expect(Object.keys(reply.headers).filter((h) => h.startsWith('access-control-'))).toEqual([]);

    const body = reply.body.toString('utf8');
    expect(body).toBe(expectedBody(7));
    expect(body).not.toContain('target_info');
    expect(body).not.toContain('otel_scope');
  });

  it('matches scrape() and ignores a query string', async () => {
    const telemetry = build();
    instrument(telemetry);
    const { port } = await serve(telemetry);
    const reply = await request(port, '/metrics?name[]=x&debug=1');
    expect(reply.status).toBe(200);
    expect(reply.body.toString('utf8')).toBe(await telemetry.scrape());
  });

  it('reads observable gauges at every scrape', async () => {
    const telemetry = build();
    const { setGauge } = instrument(telemetry);
    const { port } = await serve(telemetry);
    expect((await request(port, '/metrics')).body.toString()).toContain('\npyrycode_relay_test_gauge 7\n');
    setGauge(42);
    expect((await request(port, '/metrics')).body.toString()).toContain('\npyrycode_relay_test_gauge 42\n');
    setGauge(0);
    expect((await request(port, '/metrics')).body.toString()).toBe(expectedBody(0));
  });

  it('gzips when Accept-Encoding allows it; the decompressed body equals the plain one', async () => {
    const telemetry = build();
    instrument(telemetry);
    const { port } = await serve(telemetry);
    const plain = (await request(port, '/metrics')).body;

    for (const acceptEncoding of ['gzip', 'gzip, deflate, br', 'br;q=1.0, gzip;q=0.5', '*', 'identity;q=1, *;q=0.1']) {
      const reply = await request(port, '/metrics', { headers: { 'Accept-Encoding': acceptEncoding } });
      expect(reply.status, acceptEncoding).toBe(200);
      expect(reply.headers['content-encoding'], acceptEncoding).toBe('gzip');
      expect(reply.headers['vary']).toBe('Accept-Encoding');
      expect(reply.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
      expect(Number(reply.headers['content-length'])).toBe(reply.body.length);
      expect(zlib.gunzipSync(reply.body).toString('utf8')).toBe(plain.toString('utf8'));
    }
  });

  it('does not gzip when gzip is refused or not offered', async () => {
    const telemetry = build();
    instrument(telemetry);
    const { port } = await serve(telemetry);
    for (const acceptEncoding of [
      'gzip;q=0',
      'GZIP; q=0.000',
      'identity',
      'br, deflate',
      '*;q=0',
      'gzip;q=0, *',
      'gzip;q=abc',
    ]) {
      const reply = await request(port, '/metrics', { headers: { 'Accept-Encoding': acceptEncoding } });
      expect(reply.headers['content-encoding'], acceptEncoding).toBeUndefined();
      expect(reply.headers['vary']).toBe('Accept-Encoding');
      expect(reply.body.toString('utf8'), acceptEncoding).toBe(expectedBody(7));
    }
  });

  it('HEAD answers the same headers without a body', async () => {
    const telemetry = build();
    instrument(telemetry);
    const { port } = await serve(telemetry);
    const get = await request(port, '/metrics');
    const head = await request(port, '/metrics', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.body.length).toBe(0);
    for (const h of ['content-type', 'content-length', 'cache-control', 'vary']) {
      expect(head.headers[h], h).toBe(get.headers[h]);
    }
    const headGzip = await request(port, '/metrics', { method: 'HEAD', headers: { 'Accept-Encoding': 'gzip' } });
    expect(headGzip.headers['content-encoding']).toBe('gzip');
    expect(headGzip.body.length).toBe(0);
  });

  it('other methods on /metrics get 405 with Allow', async () => {
    const telemetry = build();
    const { port } = await serve(telemetry);
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
      const reply = await request(port, '/metrics', { method });
      expect(reply.status, method).toBe(405);
      expect(reply.headers['allow']).toBe('GET, HEAD');
      expect(reply.headers['content-type']).toBe('text/plain; charset=utf-8');
      expect(reply.headers['x-content-type-options']).toBe('nosniff');
      expect(reply.body.toString('utf8')).toBe('method not allowed\n');
      expect(Object.keys(reply.headers).filter((h) => h.startsWith('access-control-'))).toEqual([]);
    }
  });

  it('any other path is 404 page not found', async () => {
    const telemetry = build();
    instrument(telemetry);
    const { port } = await serve(telemetry);
    for (const path of [
      '/',
      '/metrics/',
      '/metricsx',
      '/METRICS',
      '/metrics/../metrics',
      '//metrics',
      '/healthz',
      '/v1/server',
    ]) {
      for (const method of ['GET', 'POST']) {
        const reply = await request(port, path, { method });
        expect(reply.status, `${method} ${path}`).toBe(404);
        expect(reply.body.toString('utf8')).toBe('404 page not found\n');
        expect(reply.headers['content-type']).toBe('text/plain; charset=utf-8');
        expect(reply.headers['x-content-type-options']).toBe('nosniff');
        expect(reply.headers['location']).toBeUndefined();
      }
    }
  });

  it('a collection error is a 500 without internal detail', async () => {
    const telemetry = build();
    instrument(telemetry);
    const broken = telemetry.meter.createObservableGauge('pyrycode_relay_test_broken', { description: 'x' });
    broken.addCallback(() => {
      throw new Error('internal detail: secret-ish');
    });
    const { port } = await serve(telemetry);
    const reply = await request(port, '/metrics', { headers: { 'Accept-Encoding': 'gzip' } });
    expect(reply.status).toBe(500);
    expect(reply.headers['content-encoding']).toBeUndefined();
    expect(reply.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(reply.body.toString('utf8')).toBe('metrics collection failed\n');
    await expect(telemetry.scrape()).rejects.toThrow(/collection failed/);
  });

  it('accepts request headers up to 64 KiB and answers 431 above', async () => {
    const telemetry = build();
    const { port } = await serve(telemetry);
    expect((await request(port, '/metrics', { headers: { 'X-Pad': 'a'.repeat(40 * 1024) } })).status).toBe(200);
    expect((await request(port, '/metrics', { headers: { 'X-Pad': 'a'.repeat(70 * 1024) } })).status).toBe(431);
  });
});

describe('telemetry isolation and target_info', () => {
  it('two telemetries in one process do not see each other', async () => {
    const one = build({ serviceVersion: 'one' });
    const two = build({ serviceVersion: 'two' });
    one.meter.createCounter('pyrycode_relay_one_total', { description: 'one' }).add(1);
    two.meter.createCounter('pyrycode_relay_two_total', { description: 'two' }).add(2);
    const a = await serve(one);
    const b = await serve(two);
    const bodyOne = (await request(a.port, '/metrics')).body.toString();
    const bodyTwo = (await request(b.port, '/metrics')).body.toString();
    expect(bodyOne).toBe(
      '# HELP pyrycode_relay_one_total one\n# TYPE pyrycode_relay_one_total counter\npyrycode_relay_one_total 1\n',
    );
    expect(bodyTwo).toBe(
      '# HELP pyrycode_relay_two_total two\n# TYPE pyrycode_relay_two_total counter\npyrycode_relay_two_total 2\n',
    );
  });

  it('an empty provider still answers with a newline-terminated body', async () => {
    const { port } = await serve(build());
    const reply = await request(port, '/metrics');
    expect(reply.status).toBe(200);
    expect(reply.body.toString()).toBe('# no registered metrics\n');
  });

  it('targetInfo adds target_info with the resource attributes as labels', async () => {
    const telemetry = build({
      serviceVersion: '2.0.0',
      targetInfo: true,
      env: { OTEL_SERVICE_NAME: 'relay-ti', OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=test,region=eu%2Cwest' },
    });
    instrument(telemetry);
    const { port } = await serve(telemetry);
    const lines = (await request(port, '/metrics')).body.toString().split('\n');
    expect(lines[0]).toBe('# HELP target_info Target metadata');
    expect(lines[1]).toBe('# TYPE target_info gauge');
    expect(lines[2]).toMatch(
      /^target_info\{service_name="relay-ti",service_version="2\.0\.0",deployment_environment="test",region="eu,west",telemetry_sdk_language="nodejs",telemetry_sdk_name="opentelemetry",telemetry_sdk_version="[0-9.]+"\} 1$/,
    );
    expect(lines.slice(3).join('\n')).toBe(expectedBody(7));
    expect(lines.join('\n')).not.toContain('otel_scope');
  });
});

describe('listener and lifecycle', () => {
  it('refuses non-loopback hosts', async () => {
    const telemetry = build();
    for (const host of ['0.0.0.0', '::', '10.0.0.1', 'localhost', '']) {
      await expect(telemetry.startMetricsServer(host, 0), host).rejects.toThrow(/non-loopback/);
    }
  });

  it('classifies loopback IP literals', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', '::1', '0:0:0:0:0:0:0:1'])
      expect(isLoopbackIpLiteral(host), host).toBe(true);
    for (const host of ['0.0.0.0', '128.0.0.1', '::', '::2', 'localhost', '127.0.0.1.nip.io', '']) {
      expect(isLoopbackIpLiteral(host), host).toBe(false);
    }
  });

  const hasIpv6Loopback = Object.values(os.networkInterfaces()).some((list) => list?.some((i) => i.address === '::1'));
  it.runIf(hasIpv6Loopback)('serves on the IPv6 loopback, bracketed or not', async () => {
    const telemetry = build();
    instrument(telemetry);
    for (const host of ['::1', '[::1]']) {
      const server = await telemetry.startMetricsServer(host, 0);
      cleanups.push(() => server.close());
      expect(server.address().host).toBe('::1');
      const reply = await request(server.address().port, '/metrics', { host: '::1' });
      expect(reply.status).toBe(200);
      expect(reply.body.toString()).toBe(expectedBody(7));
    }
  });

  it('reports its bound address', async () => {
    const telemetry = build();
    const { server, port } = await serve(telemetry);
    expect(server.address()).toEqual({ host: '127.0.0.1', port });
    expect(port).toBeGreaterThan(0);
  });

  it('close() stops listening and does not wait for idle keep-alive sockets', async () => {
    const telemetry = build();
    instrument(telemetry);
    const server = await telemetry.startMetricsServer('127.0.0.1', 0);
    const port = server.address().port;
    const agent = new http.Agent({ keepAlive: true });
    try {
      const reply = await request(port, '/metrics', { agent });
      expect(reply.status).toBe(200);
      expect(reply.headers['connection']).toBe('keep-alive');
      const started = Date.now();
      await server.close();
      expect(Date.now() - started).toBeLessThan(1_000);
      await expect(
        new Promise((resolve, reject) => {
          const socket = net.connect(port, '127.0.0.1');
          socket.on('connect', () => {
            socket.destroy();
            resolve('connected');
          });
          socket.on('error', reject);
        }),
      ).rejects.toThrow(/ECONNREFUSED/);
    } finally {
      agent.destroy();
    }
  });

  it('close() lets an in-flight scrape finish with Connection: close', async () => {
    const telemetry = build();
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const slow = telemetry.meter.createObservableGauge('pyrycode_relay_test_slow', { description: 'slow' });
    let entered = false;
    slow.addCallback(async (result) => {
      entered = true;
      await gate;
      result.observe(1);
    });
    const server = await telemetry.startMetricsServer('127.0.0.1', 0);
    const agent = new http.Agent({ keepAlive: true });
    try {
      const pending = request(server.address().port, '/metrics', { agent });
      await waitFor(() => entered, 2_000, 'the scrape to reach the slow gauge callback');
      let closed = false;
      const closing = server.close().then(() => (closed = true));
      await sleep(50);
      expect(closed).toBe(false);
      release();
      const reply = await pending;
      expect(reply.status).toBe(200);
      expect(reply.headers['connection']).toBe('close');
      expect(reply.body.toString()).toContain('pyrycode_relay_test_slow 1\n');
      await closing;
    } finally {
      release();
      agent.destroy();
    }
  });

  it('prometheus off: scrape and startMetricsServer reject; the meter is a no-op', async () => {
    const telemetry = build({ prometheus: false });
    await expect(telemetry.scrape()).rejects.toThrow(/not enabled/);
    await expect(telemetry.startMetricsServer('127.0.0.1', 0)).rejects.toThrow(/not enabled/);
    telemetry.meter.createCounter('pyrycode_relay_noop_total').add(1); // must not throw
    await telemetry.shutdown(100);
  });

  it('shutdown is idempotent and quick without OTLP', async () => {
    const telemetry = build();
    instrument(telemetry);
    const started = Date.now();
    await Promise.all([telemetry.shutdown(1_000), telemetry.shutdown(1_000)]);
    expect(Date.now() - started).toBeLessThan(500);
  });
});

describe('acceptsGzip', () => {
  it.each<[string | undefined, boolean]>([
    [undefined, false],
    ['', false],
    ['gzip', true],
    ['x-gzip', true],
    ['GZip', true],
    ['gzip;q=1', true],
    ['gzip;q=0.001', true],
    ['gzip;q=0', false],
    ['gzip; q=0.0', false],
    ['gzip;q=2', false],
    ['*', true],
    ['*;q=0', false],
    ['gzip;q=0, *;q=1', false],
    ['deflate, *;q=0.2', true],
    ['identity', false],
  ])('%j → %s', (header, expected) => {
    expect(acceptsGzip(header)).toBe(expected);
  });
});
