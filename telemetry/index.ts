// OpenTelemetry wiring for the relay: one MeterProvider per call, its readers and exporters.
//
// The relay core (src/) only sees the `Meter` returned here and imports nothing but
// @opentelemetry/api. Nothing in this module touches the global meter provider, so any number of
// independent telemetries can coexist in one process (tests build many).
//
// Readers, given at construction (MeterProvider.addMetricReader no longer exists in sdk-metrics 2):
// - Prometheus (`prometheus: true`, i.e. --metrics-listen is enabled): a PrometheusExporter with
//   preventServerStart; our own loopback server (metrics-server.ts) serves its collect() output.
// - OTLP (`otlp` from parseOtelEnv, i.e. OTEL_METRICS_EXPORTER contains "otlp"): a
//   PeriodicExportingMetricReader around the OTLP/HTTP exporter (protobuf or JSON).
// With neither, no provider exists and `meter` is the API's no-op meter.
//
// Environment: the OTLP exporter packages read OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT, _HEADERS,
// _COMPRESSION, _TIMEOUT, _CERTIFICATE, _CLIENT_KEY, _CLIENT_CERTIFICATE and
// OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE from process.env themselves, once, when
// buildTelemetry() constructs them. The daemon therefore passes `env: process.env`; `opts.env` is used
// for the resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) and to know which header values must
// be redacted from log lines. Header values are never logged.
//
// Prometheus target_info: off by default (byte-compatible scrape). An operator turns it on with
// PYRYCODE_RELAY_METRICS_TARGET_INFO=1 (parsed by parseOtelEnv into `targetInfo`): the scrape then
// starts with `target_info{service_name="…",service_version="…",…} 1`, one label per resource
// attribute (dots become underscores). otel_scope_* labels are never added.

import { createNoopMeter, type Meter } from '@opentelemetry/api';
import {
  MeterProvider,
  PeriodicExportingMetricReader,
  type IMetricReader,
  type PushMetricExporter,
} from '@opentelemetry/sdk-metrics';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { OTLPMetricExporter as OTLPMetricExporterProto } from '@opentelemetry/exporter-metrics-otlp-proto';
import { OTLPMetricExporter as OTLPMetricExporterJson } from '@opentelemetry/exporter-metrics-otlp-http';
import type { Logger } from '../src/log.js';
import { buildResource } from './resource.js';
import { trackInstruments } from './empty-histograms.js';
import { startMetricsServer as startLoopbackMetricsServer, type MetricsServer } from './metrics-server.js';
import { ReportingMetricExporter, otlpHeaderValues } from './otlp-reporting.js';
import type { OtlpSettings } from './otel-env.js';

export type { MetricsServer } from './metrics-server.js';
export type { OtlpSettings, OtelEnvResult } from './otel-env.js';
export { parseOtelEnv, TARGET_INFO_ENV_VAR } from './otel-env.js';
export { buildResource } from './resource.js';
export { isLoopbackIpLiteral } from './metrics-server.js';

export const METER_NAME = 'pyrycode-relay';

export interface TelemetryOptions {
  serviceVersion: string;
  env: Record<string, string | undefined>;
  /** true when --metrics-listen is enabled */
  prometheus: boolean;
  /** from parseOtelEnv */
  otlp: OtlpSettings | null;
  /** from parseOtelEnv: PYRYCODE_RELAY_METRICS_TARGET_INFO=1 adds target_info to the scrape */
  targetInfo: boolean;
  log: Logger;
}

export interface Telemetry {
  /** From the provider, or createNoopMeter() from @opentelemetry/api when no reader is enabled. */
  meter: Meter;
  /** Prometheus text exposition of everything the provider holds (no target_info unless targetInfo, no otel_scope_* labels). Rejects if prometheus is off. */
  scrape(): Promise<string>;
  /** Start the loopback /metrics listener. Rejects if prometheus is off or the host is not a loopback IP literal. */
  startMetricsServer(host: string, port: number): Promise<MetricsServer>;
  /** Final OTLP flush and provider shutdown, bounded by timeoutMs; never throws. */
  shutdown(timeoutMs: number): Promise<void>;
}

export function buildTelemetry(opts: TelemetryOptions): Telemetry {
  const readers: IMetricReader[] = [];

  let prometheus: PrometheusExporter | undefined;
  if (opts.prometheus) {
    prometheus = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true, withoutTargetInfo: true });
    readers.push(prometheus);
  }

  if (opts.otlp !== null) {
    // No explicit url/headers/compression/timeout: the exporter takes them from the environment.
    const inner: PushMetricExporter =
      opts.otlp.protocol === 'http/json' ? new OTLPMetricExporterJson() : new OTLPMetricExporterProto();
    readers.push(
      new PeriodicExportingMetricReader({
        exporter: new ReportingMetricExporter(inner, { log: opts.log, secrets: otlpHeaderValues(opts.env) }),
        exportIntervalMillis: opts.otlp.intervalMs,
        exportTimeoutMillis: Math.min(opts.otlp.timeoutMs, opts.otlp.intervalMs),
      }),
    );
  }

  const provider =
    readers.length > 0
      ? new MeterProvider({ resource: buildResource(opts.env, opts.serviceVersion), readers })
      : undefined;
  // The core's meter notes its histograms so the scrape shows them at zero from boot.
  const tracker = provider ? trackInstruments(provider.getMeter(METER_NAME, opts.serviceVersion)) : undefined;
  const meter = tracker?.meter ?? createNoopMeter();

  // Positional: (prefix, appendTimestamp, withResourceConstantLabels, withoutTargetInfo, withoutScopeInfo).
  const serializer = new PrometheusSerializer('', false, undefined, !opts.targetInfo, true);

  const scrape = async (): Promise<string> => {
    if (!prometheus) throw new Error('prometheus exporter is not enabled (--metrics-listen is off)');
    const { resourceMetrics, errors } = await prometheus.collect();
    if (errors.length > 0) {
      throw new Error(`metrics collection failed with ${errors.length} error(s)`);
    }
    return serializer.serialize(tracker === undefined ? resourceMetrics : tracker.fill(resourceMetrics, METER_NAME));
  };

  let shutdownPromise: Promise<void> | undefined;
  const shutdown = (timeoutMs: number): Promise<void> => {
    shutdownPromise ??= shutdownProvider(provider, timeoutMs, opts);
    return shutdownPromise;
  };

  return {
    meter,
    scrape,
    async startMetricsServer(host: string, port: number): Promise<MetricsServer> {
      if (!prometheus) throw new Error('prometheus exporter is not enabled (--metrics-listen is off)');
      return startLoopbackMetricsServer(host, port, scrape, opts.log);
    },
    shutdown,
  };
}

async function shutdownProvider(
  provider: MeterProvider | undefined,
  timeoutMs: number,
  opts: TelemetryOptions,
): Promise<void> {
  if (!provider) return;
  const event = opts.otlp !== null ? 'otlp_shutdown_failed' : 'metrics_shutdown_failed';
  const exporter = opts.otlp !== null ? 'otlp' : 'prometheus';
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), Math.max(0, timeoutMs));
  });
  try {
    // MeterProvider.shutdown() shuts every reader down; the periodic reader performs its final
    // collect + export first (each bounded by the reader's export timeout, then it waits for the
    // exporter's in-flight requests, which OTEL_EXPORTER_OTLP_TIMEOUT bounds). Race the whole thing.
    const outcome = await Promise.race([provider.shutdown().then(() => 'done' as const), timedOut]);
    if (outcome === 'timeout') {
      opts.log.warn(event, { exporter, err: `shutdown did not complete within ${timeoutMs} ms` });
    }
  } catch (err) {
    opts.log.warn(event, { exporter, err: truncate(err instanceof Error ? err.message : String(err), 200) });
  } finally {
    clearTimeout(timer);
  }
}

function truncate(s: string, max: number): string {
  return s.length <= max ? s : s.slice(0, max - 1) + '…';
}
