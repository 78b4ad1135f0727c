// Pure parsing of the OpenTelemetry environment variables the daemon honours itself.
//
// sdk-metrics reads none of OTEL_METRICS_EXPORTER / OTEL_METRIC_EXPORT_INTERVAL /
// OTEL_METRIC_EXPORT_TIMEOUT (only @opentelemetry/sdk-node does), so the daemon decides here whether
// an OTLP reader exists and how it is timed. Everything about *where* and *how* the OTLP exporter
// sends (OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT / HEADERS / COMPRESSION / TIMEOUT / CERTIFICATE /
// CLIENT_KEY / CLIENT_CERTIFICATE / METRICS_TEMPORALITY_PREFERENCE) is read by the exporter package
// itself, from process.env, when the exporter is constructed; it is deliberately not re-implemented.
//
// Rules (documented for operators in docs/):
// - An empty value is the same as an unset one (OpenTelemetry configuration spec).
// - Enum values are matched case-insensitively, after trimming (OpenTelemetry configuration spec).
// - A variable is validated only when it takes effect: the protocol, interval and timeout are only
//   checked when OTLP export is on, and OTEL_RESOURCE_ATTRIBUTES only when something exports the
//   resource (OTLP, or target_info on the scrape). A host-wide OTEL_EXPORTER_OTLP_PROTOCOL=grpc meant
//   for other programs therefore does not stop a Prometheus-only relay from booting.
// - Invalid values are an error result (the daemon refuses to start, exit 2), never silently ignored.

import { parseResourceAttributes } from './resource.js';

export interface OtlpSettings {
  protocol: 'http/protobuf' | 'http/json';
  intervalMs: number;
  timeoutMs: number;
}

export type OtelEnvResult =
  | { ok: true; otlp: OtlpSettings | null; targetInfo: boolean }
  | { ok: false; env_var: string; reason: string };

/**
 * Opt-in switch for the Prometheus `target_info` family. When exactly "1", the scrape starts with
 * `target_info{service_name="…",service_version="…",…} 1` carrying every resource attribute
 * (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, telemetry_sdk_*) as labels, which Prometheus users
 * can join on. Off by default so the default scrape is byte-compatible with the reference relay.
 */
export const TARGET_INFO_ENV_VAR = 'PYRYCODE_RELAY_METRICS_TARGET_INFO';

export const DEFAULT_EXPORT_INTERVAL_MS = 60_000;
export const DEFAULT_EXPORT_TIMEOUT_MS = 30_000;
/** setInterval/setTimeout silently turn larger delays into 1 ms (TimeoutOverflowWarning). */
export const MAX_TIMER_MS = 2_147_483_647;

const SUPPORTED_EXPORTERS = 'supported values: "otlp", "none", or a comma list such as "otlp,prometheus"';

export function parseOtelEnv(env: Record<string, string | undefined>): OtelEnvResult {
  const targetInfo = parseTargetInfo(env);
  if (!targetInfo.ok) return targetInfo;

  const exporters = parseExporters(env);
  if (!exporters.ok) return exporters;

  let otlp: OtlpSettings | null = null;
  if (exporters.otlp) {
    const protocol = parseProtocol(env);
    if (!protocol.ok) return protocol;
    const interval = parsePositiveMs(env, 'OTEL_METRIC_EXPORT_INTERVAL', DEFAULT_EXPORT_INTERVAL_MS);
    if (!interval.ok) return interval;
    const timeout = parsePositiveMs(env, 'OTEL_METRIC_EXPORT_TIMEOUT', DEFAULT_EXPORT_TIMEOUT_MS);
    if (!timeout.ok) return timeout;
    // PeriodicExportingMetricReader throws when both are given and timeout > interval.
    otlp = {
      protocol: protocol.value,
      intervalMs: interval.value,
      timeoutMs: Math.min(timeout.value, interval.value),
    };
  }

  if (otlp !== null || targetInfo.value) {
    const raw = nonEmpty(env.OTEL_RESOURCE_ATTRIBUTES);
    if (raw !== undefined) {
      const parsed = parseResourceAttributes(raw);
      if (!parsed.ok) return { ok: false, env_var: 'OTEL_RESOURCE_ATTRIBUTES', reason: parsed.reason };
    }
  }

  return { ok: true, otlp, targetInfo: targetInfo.value };
}

type Failure = { ok: false; env_var: string; reason: string };
type Parsed<T> = { ok: true; value: T } | Failure;

function nonEmpty(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  return trimmed === '' ? undefined : trimmed;
}

function parseTargetInfo(env: Record<string, string | undefined>): Parsed<boolean> {
  const raw = env[TARGET_INFO_ENV_VAR];
  if (raw === undefined || raw === '') return { ok: true, value: false };
  if (raw === '1') return { ok: true, value: true };
  return {
    ok: false,
    env_var: TARGET_INFO_ENV_VAR,
    reason: 'must be "1" to add target_info to the /metrics scrape, or unset',
  };
}

function parseExporters(env: Record<string, string | undefined>): { ok: true; otlp: boolean } | Failure {
  const raw = nonEmpty(env.OTEL_METRICS_EXPORTER);
  if (raw === undefined) return { ok: true, otlp: false };
  const names = raw
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== '');
  if (names.length === 0) return { ok: true, otlp: false };
  let otlp = false;
  let none = false;
  for (const name of names) {
    if (name === 'otlp') otlp = true;
    else if (name === 'none') none = true;
    // The Prometheus endpoint is controlled only by --metrics-listen; naming it here is allowed
    // (a common shared setting) and changes nothing.
    else if (name === 'prometheus') continue;
    else {
      return {
        ok: false,
        env_var: 'OTEL_METRICS_EXPORTER',
        reason: `unsupported exporter "${truncate(name, 40)}"; ${SUPPORTED_EXPORTERS} (the Prometheus endpoint is controlled by --metrics-listen)`,
      };
    }
  }
  if (none && names.some((n) => n !== 'none')) {
    return {
      ok: false,
      env_var: 'OTEL_METRICS_EXPORTER',
      reason: `"none" cannot be combined with other exporters; ${SUPPORTED_EXPORTERS}`,
    };
  }
  return { ok: true, otlp };
}

function parseProtocol(env: Record<string, string | undefined>): Parsed<OtlpSettings['protocol']> {
  let envVar = 'OTEL_EXPORTER_OTLP_METRICS_PROTOCOL';
  let raw = nonEmpty(env[envVar]);
  if (raw === undefined) {
    envVar = 'OTEL_EXPORTER_OTLP_PROTOCOL';
    raw = nonEmpty(env[envVar]);
  }
  if (raw === undefined) return { ok: true, value: 'http/protobuf' };
  const value = raw.toLowerCase();
  if (value === 'http/protobuf' || value === 'http/json') return { ok: true, value };
  if (value === 'grpc') {
    return {
      ok: false,
      env_var: envVar,
      reason: 'OTLP over gRPC is not supported in this build; use http/protobuf (the default) or http/json',
    };
  }
  return {
    ok: false,
    env_var: envVar,
    reason: `unsupported OTLP protocol "${truncate(raw, 40)}"; supported values: "http/protobuf" (default), "http/json"`,
  };
}

function parsePositiveMs(env: Record<string, string | undefined>, envVar: string, fallback: number): Parsed<number> {
  const raw = nonEmpty(env[envVar]);
  if (raw === undefined) return { ok: true, value: fallback };
  if (!/^[0-9]+$/.test(raw)) {
    return { ok: false, env_var: envVar, reason: 'must be a positive integer number of milliseconds' };
  }
  const value = Number(raw);
  if (value <= 0) {
    return { ok: false, env_var: envVar, reason: 'must be a positive integer number of milliseconds' };
  }
  if (value > MAX_TIMER_MS) {
    return { ok: false, env_var: envVar, reason: `must be at most ${MAX_TIMER_MS} milliseconds` };
  }
  return { ok: true, value };
}

function truncate(s: string, max: number): string {
  return s.length <= max ? s : s.slice(0, max) + '…';
}
