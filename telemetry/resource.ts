// The OpenTelemetry Resource the daemon's MeterProvider carries (OTLP resource attributes, and the
// labels of the opt-in Prometheus target_info family).
//
// The resources package's envDetector only reads process.env, so OTEL_RESOURCE_ATTRIBUTES and
// OTEL_SERVICE_NAME are parsed here from an explicit `env` (tests pass their own), with the same rules
// as envDetector in @opentelemetry/resources 2.x: comma-separated key=value pairs, blank entries
// skipped, keys and values trimmed and percent-decoded, ',' and '=' inside keys or values must be
// percent-encoded, keys and values at most 255 characters. Per the OpenTelemetry spec, a malformed
// value is discarded as a whole (parseOtelEnv reports it as a boot error before we get here).

import { defaultResource, resourceFromAttributes, type Resource } from '@opentelemetry/resources';

export const DEFAULT_SERVICE_NAME = 'pyrycode-relay';

const MAX_LENGTH = 255;

export type ResourceAttributesResult = { ok: true; attributes: Record<string, string> } | { ok: false; reason: string };

/** Parse an OTEL_RESOURCE_ATTRIBUTES value. Error reasons never echo the value (it is the operator's, but may be long). */
export function parseResourceAttributes(raw: string): ResourceAttributesResult {
  const attributes: Record<string, string> = {};
  const entries = raw.split(',');
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i]!;
    if (entry.trim() === '') continue;
    const parts = entry.split('=');
    if (parts.length !== 2) {
      return {
        ok: false,
        reason: `entry ${i + 1} is not key=value (a ',' or '=' inside a key or value must be percent-encoded as %2C / %3D)`,
      };
    }
    const key = parts[0]!.trim();
    const value = parts[1]!.trim();
    if (key === '') return { ok: false, reason: `entry ${i + 1} has an empty key` };
    let decodedKey: string;
    let decodedValue: string;
    try {
      decodedKey = decodeURIComponent(key);
      decodedValue = decodeURIComponent(value);
    } catch {
      return { ok: false, reason: `entry ${i + 1} has an invalid percent-encoding` };
    }
    if (decodedKey.length > MAX_LENGTH || decodedValue.length > MAX_LENGTH) {
      return { ok: false, reason: `entry ${i + 1} has a key or value longer than ${MAX_LENGTH} characters` };
    }
    attributes[decodedKey] = decodedValue;
  }
  return { ok: true, attributes };
}

/**
 * service.name: OTEL_SERVICE_NAME when set and non-blank, else a `service.name` pair inside
 * OTEL_RESOURCE_ATTRIBUTES, else "pyrycode-relay". service.version: always the build version (a
 * service.version pair in OTEL_RESOURCE_ATTRIBUTES is ignored, so exported data cannot claim a
 * version the binary is not). Then every other OTEL_RESOURCE_ATTRIBUTES pair in the order given, then
 * the SDK's telemetry.sdk.* attributes (which OTEL_RESOURCE_ATTRIBUTES may override).
 */
export function buildResource(env: Record<string, string | undefined>, serviceVersion: string): Resource {
  const rawAttrs = env.OTEL_RESOURCE_ATTRIBUTES;
  let fromEnv: Record<string, string> = {};
  if (rawAttrs !== undefined && rawAttrs.trim() !== '') {
    const parsed = parseResourceAttributes(rawAttrs);
    if (parsed.ok) fromEnv = parsed.attributes;
  }
  const envServiceName = env.OTEL_SERVICE_NAME?.trim();
  const attrServiceName = fromEnv['service.name'];
  const serviceName =
    envServiceName !== undefined && envServiceName !== ''
      ? envServiceName
      : attrServiceName !== undefined && attrServiceName !== ''
        ? attrServiceName
        : DEFAULT_SERVICE_NAME;

  const attributes: Record<string, string | number | boolean> = {
    'service.name': serviceName,
    'service.version': serviceVersion,
  };
  for (const [key, value] of Object.entries(fromEnv)) {
    if (key === 'service.name' || key === 'service.version') continue;
    attributes[key] = value;
  }
  // telemetry.sdk.language / name / version (defaultResource reads no environment variables).
  for (const [key, value] of Object.entries(defaultResource().attributes)) {
    if (key.startsWith('telemetry.sdk.') && !(key in attributes) && value !== undefined) {
      attributes[key] = value as string | number | boolean;
    }
  }
  return resourceFromAttributes(attributes);
}
