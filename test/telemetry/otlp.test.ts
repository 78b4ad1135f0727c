import zlib from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { createLogger, type Logger } from '../../src/log.js';
import { buildTelemetry, parseOtelEnv, type Telemetry } from '../../telemetry/index.js';
import { ReportingMetricExporter } from '../../telemetry/otlp-reporting.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { type OtlpReceiver, type ReceivedRequest, startOtlpReceiver, unusedPort } from '../helpers/otlp-receiver.js';

type Env = Record<string, string | undefined>;

interface Captured {
  log: Logger;
  lines: string[];
  records(): Array<Record<string, unknown>>;
  events(name: string): Array<Record<string, unknown>>;
}

function captureLogger(): Captured {
  const lines: string[] = [];
  const records = (): Array<Record<string, unknown>> => lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  return {
    log: createLogger('json', { write: (line: string) => lines.push(line) }),
    lines,
    records,
    events: (name) => records().filter((r) => r['msg'] === name),
  };
}

/**
 * The OTLP exporter packages read OTEL_EXPORTER_OTLP_* from process.env when they are constructed
 * (the daemon passes `env: process.env`). Tests therefore install their env into process.env for the
 * construction only, with every other OTEL_* variable of the host removed, and restore it after.
 */
function buildWithProcessEnv(
  env: Env,
  options: { log: Logger; prometheus?: boolean; serviceVersion?: string },
): Telemetry {
  const parsed = parseOtelEnv(env);
  if (!parsed.ok) throw new Error(`test env rejected: ${parsed.env_var}: ${parsed.reason}`);
  const saved = { ...process.env };
  for (const key of Object.keys(process.env)) if (key.startsWith('OTEL_')) delete process.env[key];
  for (const [key, value] of Object.entries(env)) if (value !== undefined) process.env[key] = value;
  try {
    return buildTelemetry({
      serviceVersion: options.serviceVersion ?? '3.1.4-test',
      env,
      prometheus: options.prometheus ?? false,
      otlp: parsed.otlp,
      targetInfo: parsed.targetInfo,
      log: options.log,
    });
  } finally {
    for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
    Object.assign(process.env, saved);
  }
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function receiver(): Promise<OtlpReceiver> {
  const r = await startOtlpReceiver();
  cleanups.push(() => r.close());
  return r;
}

function track(telemetry: Telemetry): Telemetry {
  cleanups.push(() => telemetry.shutdown(2_000));
  return telemetry;
}

// --- OTLP/JSON payload helpers (the proto3 JSON mapping used by exporter-metrics-otlp-http) ---
interface JsonAttr {
  key: string;
  value: { stringValue?: string };
}
interface JsonPayload {
  resourceMetrics: Array<{
    resource: { attributes: JsonAttr[] };
    scopeMetrics: Array<{
      scope: { name: string; version?: string };
      metrics: Array<{
        name: string;
        description?: string;
        sum?: {
          isMonotonic?: boolean;
          aggregationTemporality?: number;
          dataPoints: Array<{ attributes?: JsonAttr[]; asDouble?: number; asInt?: string | number }>;
        };
      }>;
    }>;
  }>;
}

function jsonPayloads(requests: ReceivedRequest[]): JsonPayload[] {
  return requests.map((r) => JSON.parse(r.body.toString('utf8')) as JsonPayload);
}

function attrs(list: JsonAttr[]): Record<string, string | undefined> {
  return Object.fromEntries(list.map((a) => [a.key, a.value.stringValue]));
}

function findMetric(payload: JsonPayload, name: string) {
  for (const rm of payload.resourceMetrics) {
    for (const sm of rm.scopeMetrics) {
      const metric = sm.metrics.find((m) => m.name === name);
      if (metric) return { resource: attrs(rm.resource.attributes), scope: sm.scope, metric };
    }
  }
  return undefined;
}

function hasMetric(request: ReceivedRequest, name: string): boolean {
  return request.body.includes(Buffer.from(name, 'utf8'));
}

describe('OTLP export over http/json', () => {
  it('sends the metric, its data point and the resource to /v1/metrics', async () => {
    const r = await receiver();
    const { log, lines } = captureLogger();
    const telemetry = track(
      buildWithProcessEnv(
        {
          OTEL_METRICS_EXPORTER: 'otlp,prometheus',
          OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
          OTEL_EXPORTER_OTLP_ENDPOINT: r.url,
          OTEL_METRIC_EXPORT_INTERVAL: '200',
          OTEL_SERVICE_NAME: 'relay-otlp-json',
          OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=ci,team=a%2Cb',
        },
        { log, prometheus: true },
      ),
    );
    const counter = telemetry.meter.createCounter('pyrycode_relay_otlp_json_total', { description: 'OTLP JSON test.' });
    counter.add(0, { direction: 'a' });
    counter.add(5, { direction: 'b' });

    await waitFor(() => r.requests.some((q) => hasMetric(q, 'pyrycode_relay_otlp_json_total')), 5_000, 'a JSON export');
    const request = r.requests.find((q) => hasMetric(q, 'pyrycode_relay_otlp_json_total'))!;
    expect(request.method).toBe('POST');
    expect(request.url).toBe('/v1/metrics');
    expect(request.headers['content-type']).toBe('application/json');
    expect(request.headers['content-encoding']).toBeUndefined();

    const found = findMetric(jsonPayloads([request])[0]!, 'pyrycode_relay_otlp_json_total');
    expect(found, 'metric in payload').toBeDefined();
    expect(found!.resource).toMatchObject({
      'service.name': 'relay-otlp-json',
      'service.version': '3.1.4-test',
      'deployment.environment': 'ci',
      team: 'a,b',
    });
    expect(found!.scope).toMatchObject({ name: 'pyrycode-relay', version: '3.1.4-test' });
    expect(found!.metric.description).toBe('OTLP JSON test.');
    expect(found!.metric.sum?.isMonotonic).toBe(true);
    expect(found!.metric.sum?.aggregationTemporality, 'cumulative by default').toBe(2);
    const points = found!.metric.sum!.dataPoints.map((p) => ({
      direction: attrs(p.attributes ?? [])['direction'],
      value: p.asDouble,
    }));
    expect(points).toEqual([
      { direction: 'a', value: 0 },
      { direction: 'b', value: 5 },
    ]);

    // The Prometheus reader runs beside it on the same provider.
    expect(await telemetry.scrape()).toContain('pyrycode_relay_otlp_json_total{direction="b"} 5\n');
    expect(lines.filter((l) => l.includes('otlp_export_failed'))).toEqual([]);
  });

  it('honours OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_COMPRESSION and the signal-specific endpoint', async () => {
    const r = await receiver();
    const { log, lines } = captureLogger();
    const telemetry = track(
      buildWithProcessEnv(
        {
          OTEL_METRICS_EXPORTER: 'otlp',
          OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
          // Used as is (no /v1/metrics appended), and wins over the generic endpoint.
          OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: `${r.url}/custom/ingest`,
          OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:1',
          OTEL_EXPORTER_OTLP_HEADERS: 'x-test-token=secret123,x-tenant=relay%20ops',
          OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip',
          OTEL_METRIC_EXPORT_INTERVAL: '200',
        },
        { log },
      ),
    );
    telemetry.meter.createCounter('pyrycode_relay_otlp_hdr_total', { description: 'h' }).add(2);

    await waitFor(() => r.requests.length > 0, 5_000, 'an export with headers and gzip');
    const request = r.requests[0]!;
    expect(request.url).toBe('/custom/ingest');
    expect(request.headers['x-test-token']).toBe('secret123');
    expect(request.headers['x-tenant']).toBe('relay ops');
    expect(request.headers['content-encoding']).toBe('gzip');
    expect(request.raw.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    expect(zlib.gunzipSync(request.raw).equals(request.body)).toBe(true);
    expect(findMetric(jsonPayloads([request])[0]!, 'pyrycode_relay_otlp_hdr_total')).toBeDefined();
    expect(lines.join('')).not.toContain('secret123');
  });
});

describe('OTLP temporality', () => {
  it('OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta reaches the exporter through the logging wrapper', async () => {
    const r = await receiver();
    const { log } = captureLogger();
    const telemetry = track(
      buildWithProcessEnv(
        {
          OTEL_METRICS_EXPORTER: 'otlp',
          OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
          OTEL_EXPORTER_OTLP_ENDPOINT: r.url,
          OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: 'delta',
          OTEL_METRIC_EXPORT_INTERVAL: '200',
        },
        { log, prometheus: true },
      ),
    );
    telemetry.meter.createCounter('pyrycode_relay_otlp_delta_total', { description: 'd' }).add(6);
    await waitFor(() => r.requests.length > 0, 5_000, 'a delta export');
    const found = findMetric(jsonPayloads(r.requests)[0]!, 'pyrycode_relay_otlp_delta_total');
    expect(found?.metric.sum?.aggregationTemporality, 'AGGREGATION_TEMPORALITY_DELTA').toBe(1);
    // The Prometheus reader keeps its own cumulative storage.
    expect(await telemetry.scrape()).toContain('pyrycode_relay_otlp_delta_total 6\n');
  });
});

describe('OTLP export over http/protobuf (the default protocol)', () => {
  it('sends application/x-protobuf carrying the metric name and resource strings', async () => {
    const r = await receiver();
    const { log } = captureLogger();
    const telemetry = track(
      buildWithProcessEnv(
        {
          OTEL_METRICS_EXPORTER: 'otlp',
          OTEL_EXPORTER_OTLP_ENDPOINT: `${r.url}/`,
          OTEL_METRIC_EXPORT_INTERVAL: '200',
          OTEL_SERVICE_NAME: 'relay-otlp-proto',
          OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=proto-ci',
        },
        { log },
      ),
    );
    telemetry.meter.createCounter('pyrycode_relay_otlp_proto_total', { description: 'p' }).add(4, { direction: 'b' });

    await waitFor(() => r.requests.length > 0, 5_000, 'a protobuf export');
    const request = r.requests[0]!;
    expect(request.url).toBe('/v1/metrics');
    expect(request.headers['content-type']).toBe('application/x-protobuf');
    // Protobuf strings are plain UTF-8 bytes on the wire.
    for (const s of [
      'pyrycode_relay_otlp_proto_total',
      'relay-otlp-proto',
      'proto-ci',
      '3.1.4-test',
      'service.version',
      'direction',
    ]) {
      expect(request.body.includes(Buffer.from(s, 'utf8')), s).toBe(true);
    }
    expect(() => JSON.parse(request.body.toString('utf8'))).toThrow();
  });
});

describe('OTLP shutdown', () => {
  it('shutdown() flushes a final export even with a 60 s interval', async () => {
    const r = await receiver();
    const { log, lines } = captureLogger();
    const telemetry = buildWithProcessEnv(
      {
        OTEL_METRICS_EXPORTER: 'otlp',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_EXPORTER_OTLP_ENDPOINT: r.url,
        OTEL_METRIC_EXPORT_INTERVAL: '60000',
      },
      { log },
    );
    const counter = telemetry.meter.createCounter('pyrycode_relay_otlp_final_total', { description: 'f' });
    counter.add(1);
    await sleep(300);
    expect(r.requests).toHaveLength(0);
    counter.add(41); // just before shutdown

    const started = Date.now();
    await telemetry.shutdown(2_000);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(r.requests.length, 'the final export arrived before shutdown resolved').toBe(1);
    const found = findMetric(jsonPayloads(r.requests)[0]!, 'pyrycode_relay_otlp_final_total');
    expect(found?.metric.sum?.dataPoints[0]?.asDouble).toBe(42);
    expect(lines).toEqual([]);
    await telemetry.shutdown(2_000); // idempotent
  });

  it('an unreachable collector gives one otlp_export_failed line, never a header value; shutdown stays bounded', async () => {
    const port = await unusedPort();
    const captured = captureLogger();
    const telemetry = buildWithProcessEnv(
      {
        OTEL_METRICS_EXPORTER: 'otlp',
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
        OTEL_EXPORTER_OTLP_HEADERS: 'x-test-token=secret123',
        OTEL_METRIC_EXPORT_INTERVAL: '200',
        // The exporter's own retry budget (default 10 s); short here so every export fails within an interval.
        OTEL_EXPORTER_OTLP_TIMEOUT: '150',
      },
      { log: captured.log },
    );
    telemetry.meter.createCounter('pyrycode_relay_otlp_down_total', { description: 'd' }).add(1);

    await waitFor(() => captured.events('otlp_export_failed').length > 0, 3_000, 'otlp_export_failed');
    await sleep(1_000); // about five more failed exports
    const failed = captured.events('otlp_export_failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ level: 'WARN', exporter: 'otlp' });
    expect(String(failed[0]!['err'])).toMatch(/ECONNREFUSED/);
    expect(String(failed[0]!['err']).length).toBeLessThanOrEqual(200);

    const started = Date.now();
    await telemetry.shutdown(2_000);
    expect(Date.now() - started).toBeLessThan(2_500);
    expect(captured.events('otlp_export_failed')).toHaveLength(1);
    expect(captured.lines.join('')).not.toContain('secret123');
  });

  it('shutdown(timeoutMs) returns on time while the exporter is still retrying, and says so', async () => {
    const port = await unusedPort();
    const captured = captureLogger();
    // Default exporter timeout (10 s of retries on ECONNREFUSED), default 60 s interval.
    const telemetry = buildWithProcessEnv(
      { OTEL_METRICS_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}` },
      { log: captured.log },
    );
    telemetry.meter.createCounter('pyrycode_relay_otlp_slow_total', { description: 's' }).add(1);
    const started = Date.now();
    await telemetry.shutdown(500);
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(450);
    expect(elapsed).toBeLessThan(1_000);
    const failed = captured.events('otlp_shutdown_failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ level: 'WARN', exporter: 'otlp' });
    expect(String(failed[0]!['err'])).toMatch(/500 ms/);
  });
});

describe('ReportingMetricExporter around a real OTLP exporter', () => {
  function pipeline(r: OtlpReceiver, log: Logger, windowMs: number, headers?: Record<string, string>) {
    const exporter = new ReportingMetricExporter(new OTLPMetricExporter({ url: `${r.url}/v1/metrics`, headers }), {
      log,
      windowMs,
      secrets: headers ? Object.values(headers) : [],
    });
    const provider = new MeterProvider({
      readers: [new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 50, exportTimeoutMillis: 50 })],
    });
    cleanups.push(() => provider.shutdown().catch(() => undefined));
    provider.getMeter('t').createCounter('pyrycode_relay_report_total', { description: 'r' }).add(1);
    return provider;
  }

  it('logs one failure per window, then recovery with the suppressed count', async () => {
    const r = await receiver();
    r.setStatus(400, 'Bad Request');
    const captured = captureLogger();
    pipeline(r, captured.log, 60_000);

    await waitFor(() => r.requests.length >= 4, 3_000, 'four rejected exports');
    const failed = captured.events('otlp_export_failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ exporter: 'otlp', err: 'Bad Request (HTTP 400)' });
    expect(failed[0]!['suppressed']).toBeUndefined();

    r.setStatus(200);
    await waitFor(() => captured.events('otlp_export_recovered').length > 0, 3_000, 'otlp_export_recovered');
    const recovered = captured.events('otlp_export_recovered');
    expect(recovered).toHaveLength(1);
    expect(recovered[0]).toMatchObject({ level: 'INFO', exporter: 'otlp' });
    expect(recovered[0]!['suppressed']).toBeGreaterThanOrEqual(2);

    // A new failure inside the same window is counted, not logged.
    r.setStatus(400, 'Bad Request');
    const before = r.requests.length;
    await waitFor(() => r.requests.length >= before + 3, 3_000, 'three more rejected exports');
    expect(captured.events('otlp_export_failed')).toHaveLength(1);
  });

  it('logs again after the window, reporting what it suppressed; redacts header values from error text', async () => {
    const r = await receiver();
    r.setStatus(401, 'token secret123 refused');
    const captured = captureLogger();
    pipeline(r, captured.log, 300, { 'x-test-token': 'secret123' });

    await waitFor(() => captured.events('otlp_export_failed').length >= 2, 3_000, 'a second otlp_export_failed line');
    const [first, second] = captured.events('otlp_export_failed');
    expect(first!['err']).toBe('token [redacted] refused (HTTP 401)');
    expect(first!['suppressed']).toBeUndefined();
    expect(second!['suppressed']).toBeGreaterThanOrEqual(1);
    expect(captured.lines.join('')).not.toContain('secret123');
  });
});
