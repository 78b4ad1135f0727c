// A delegating PushMetricExporter that turns OTLP export results into rate-limited log lines.
//
// The OTLP exporters report failures only through the (global, by default silent) OpenTelemetry diag
// logger, so without this wrapper an unreachable collector is invisible to the operator. Lines:
//   warn otlp_export_failed    exporter=otlp err=<message, ≤200 chars> [suppressed=<n>]
//   info otlp_export_recovered exporter=otlp [suppressed=<n>]
// At most one otlp_export_failed line per window (60 s): further failures inside the window are
// counted and reported as `suppressed` on the next line of either kind. otlp_export_recovered is
// logged on the first success after a failure episode that produced a failed line.
//
// Error text comes from the exporter (network errors such as "connect ECONNREFUSED 127.0.0.1:4318",
// or the collector's HTTP status text); it never contains request headers. As a second guard, any
// header value configured through OTEL_EXPORTER_OTLP_[METRICS_]HEADERS is redacted from the text
// before it is truncated and logged.

import {
  AggregationTemporality,
  AggregationType,
  type AggregationOption,
  type InstrumentType,
  type PushMetricExporter,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import type { Logger } from '../src/log.js';

type ExportResult = Parameters<Parameters<PushMetricExporter['export']>[1]>[0];
/** ExportResultCode.SUCCESS in @opentelemetry/core (not a direct dependency of this package). */
const EXPORT_SUCCESS = 0;

export const OTLP_FAILURE_LOG_WINDOW_MS = 60_000;
export const MAX_ERR_CHARS = 200;

export interface ReportingExporterOptions {
  log: Logger;
  /** Values that must never appear in a log line (configured OTLP header values). */
  secrets?: readonly string[];
  /** Minimum time between two otlp_export_failed lines; 60 s by default. */
  windowMs?: number;
  /** Monotonic clock in ms; performance.now by default. */
  now?: () => number;
}

export class ReportingMetricExporter implements PushMetricExporter {
  private readonly inner: PushMetricExporter;
  private readonly log: Logger;
  private readonly secrets: readonly string[];
  private readonly windowMs: number;
  private readonly now: () => number;
  private lastWarnAt: number | undefined;
  private suppressed = 0;
  private failing = false;
  private warnedThisEpisode = false;

  constructor(inner: PushMetricExporter, options: ReportingExporterOptions) {
    this.inner = inner;
    this.log = options.log;
    // Very short values (e.g. "1") are not secrets and would mangle every message if redacted.
    this.secrets = (options.secrets ?? []).filter((s) => s.length >= 4).sort((a, b) => b.length - a.length);
    this.windowMs = options.windowMs ?? OTLP_FAILURE_LOG_WINDOW_MS;
    this.now = options.now ?? (() => performance.now());
  }

  export(metrics: ResourceMetrics, resultCallback: (result: ExportResult) => void): void {
    let settled = false;
    const done = (result: ExportResult): void => {
      if (settled) return;
      settled = true;
      try {
        this.record(result);
      } finally {
        resultCallback(result);
      }
    };
    try {
      this.inner.export(metrics, done);
    } catch (err) {
      done({ code: 1, error: err instanceof Error ? err : new Error(String(err)) } as ExportResult);
    }
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush();
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  // The reader binds these at construction; they must reach the real exporter so that
  // OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE keeps working. The fallbacks are the reader's own
  // defaults for an exporter that does not choose.
  selectAggregationTemporality(instrumentType: InstrumentType): AggregationTemporality {
    return this.inner.selectAggregationTemporality?.(instrumentType) ?? AggregationTemporality.CUMULATIVE;
  }

  selectAggregation(instrumentType: InstrumentType): AggregationOption {
    return this.inner.selectAggregation?.(instrumentType) ?? { type: AggregationType.DEFAULT };
  }

  private record(result: ExportResult): void {
    if (result.code === EXPORT_SUCCESS) {
      if (this.failing) {
        this.failing = false;
        if (this.warnedThisEpisode) {
          this.log.info('otlp_export_recovered', {
            exporter: 'otlp',
            suppressed: this.suppressed > 0 ? this.suppressed : undefined,
          });
          this.suppressed = 0;
        }
        this.warnedThisEpisode = false;
      }
      return;
    }
    if (!this.failing) {
      this.failing = true;
      this.warnedThisEpisode = false;
    }
    const now = this.now();
    if (this.lastWarnAt === undefined || now - this.lastWarnAt >= this.windowMs) {
      this.lastWarnAt = now;
      this.warnedThisEpisode = true;
      this.log.warn('otlp_export_failed', {
        exporter: 'otlp',
        err: this.describe(result.error),
        suppressed: this.suppressed > 0 ? this.suppressed : undefined,
      });
      this.suppressed = 0;
    } else {
      this.suppressed++;
    }
  }

  private describe(error: unknown): string {
    let text: string;
    if (error instanceof Error) {
      text = error.message || error.name || 'unknown error';
      const code = (error as { code?: unknown }).code;
      // OTLPExporterError carries the HTTP status as a number; network errors carry e.g. 'ECONNREFUSED'
      // (already part of their message).
      if (typeof code === 'number') text += ` (HTTP ${code})`;
    } else if (error === undefined) {
      text = 'export failed';
    } else {
      text = String(error);
    }
    for (const secret of this.secrets) text = text.split(secret).join('[redacted]');
    if (text.length > MAX_ERR_CHARS) text = text.slice(0, MAX_ERR_CHARS - 1) + '…';
    return text;
  }
}

/**
 * The header values configured for the OTLP exporter (OTEL_EXPORTER_OTLP_HEADERS and
 * OTEL_EXPORTER_OTLP_METRICS_HEADERS: comma-separated key=value, values possibly percent-encoded),
 * raw and decoded, for redaction only.
 */
export function otlpHeaderValues(env: Record<string, string | undefined>): string[] {
  const values: string[] = [];
  for (const name of ['OTEL_EXPORTER_OTLP_HEADERS', 'OTEL_EXPORTER_OTLP_METRICS_HEADERS']) {
    const raw = env[name];
    if (!raw) continue;
    for (const entry of raw.split(',')) {
      const eq = entry.indexOf('=');
      if (eq < 0) continue;
      const value = entry.slice(eq + 1).trim();
      if (value === '') continue;
      values.push(value);
      try {
        const decoded = decodeURIComponent(value);
        if (decoded !== value) values.push(decoded);
      } catch {
        // keep the raw form only
      }
    }
  }
  return values;
}
