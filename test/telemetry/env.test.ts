import { describe, expect, it } from 'vitest';
import { parseOtelEnv, type OtelEnvResult } from '../../telemetry/otel-env.js';
import { buildResource, parseResourceAttributes } from '../../telemetry/resource.js';

type Env = Record<string, string | undefined>;

function ok(env: Env): Extract<OtelEnvResult, { ok: true }> {
  const result = parseOtelEnv(env);
  if (!result.ok) throw new Error(`expected ok for ${JSON.stringify(env)}, got ${JSON.stringify(result)}`);
  return result;
}

function fail(env: Env): Extract<OtelEnvResult, { ok: false }> {
  const result = parseOtelEnv(env);
  if (result.ok) throw new Error(`expected an error for ${JSON.stringify(env)}, got ${JSON.stringify(result)}`);
  return result;
}

const DEFAULT_OTLP = { protocol: 'http/protobuf', intervalMs: 60_000, timeoutMs: 30_000 };

describe('parseOtelEnv: OTEL_METRICS_EXPORTER', () => {
  it.each<[string, Env]>([
    ['unset', {}],
    ['empty', { OTEL_METRICS_EXPORTER: '' }],
    ['blank', { OTEL_METRICS_EXPORTER: '  ' }],
    ['none', { OTEL_METRICS_EXPORTER: 'none' }],
    ['prometheus alone (endpoint is --metrics-listen)', { OTEL_METRICS_EXPORTER: 'prometheus' }],
  ])('%s → OTLP off', (_name, env) => {
    expect(ok(env)).toEqual({ ok: true, otlp: null, targetInfo: false });
  });

  it.each<[string, Env]>([
    ['otlp', { OTEL_METRICS_EXPORTER: 'otlp' }],
    ['otlp,prometheus', { OTEL_METRICS_EXPORTER: 'otlp,prometheus' }],
    ['spaces and case', { OTEL_METRICS_EXPORTER: ' prometheus , OTLP ' }],
    ['trailing comma', { OTEL_METRICS_EXPORTER: 'otlp,' }],
  ])('%s → OTLP on with defaults', (_name, env) => {
    expect(ok(env)).toEqual({ ok: true, otlp: DEFAULT_OTLP, targetInfo: false });
  });

  it.each<[string, string]>([
    ['console', 'console'],
    ['zipkin', 'zipkin'],
    ['otlp with an unknown one', 'otlp,console'],
  ])('unknown value (%s) is an error naming the supported values', (_name, value) => {
    const result = fail({ OTEL_METRICS_EXPORTER: value });
    expect(result.env_var).toBe('OTEL_METRICS_EXPORTER');
    expect(result.reason).toContain('"otlp"');
    expect(result.reason).toContain('"none"');
    expect(result.reason).toContain('--metrics-listen');
  });

  it.each(['none,otlp', 'otlp,none', 'none,prometheus'])('"none" combined with others (%s) is an error', (value) => {
    const result = fail({ OTEL_METRICS_EXPORTER: value });
    expect(result.env_var).toBe('OTEL_METRICS_EXPORTER');
    expect(result.reason).toMatch(/"none" cannot be combined/);
  });
});

describe('parseOtelEnv: protocol', () => {
  const on = { OTEL_METRICS_EXPORTER: 'otlp' };

  it('defaults to http/protobuf (the OpenTelemetry default)', () => {
    expect(ok(on).otlp?.protocol).toBe('http/protobuf');
  });

  it('reads OTEL_EXPORTER_OTLP_PROTOCOL', () => {
    expect(ok({ ...on, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }).otlp?.protocol).toBe('http/json');
    expect(ok({ ...on, OTEL_EXPORTER_OTLP_PROTOCOL: 'HTTP/Protobuf' }).otlp?.protocol).toBe('http/protobuf');
  });

  it('OTEL_EXPORTER_OTLP_METRICS_PROTOCOL wins over OTEL_EXPORTER_OTLP_PROTOCOL', () => {
    const env = { ...on, OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: 'http/json' };
    expect(ok(env).otlp?.protocol).toBe('http/json');
  });

  it('an empty signal-specific value falls back to the generic one', () => {
    const env = { ...on, OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: '', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' };
    expect(ok(env).otlp?.protocol).toBe('http/json');
  });

  it('grpc is refused with a hint to use http/protobuf', () => {
    const result = fail({ ...on, OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' });
    expect(result.env_var).toBe('OTEL_EXPORTER_OTLP_PROTOCOL');
    expect(result.reason).toMatch(/not supported in this build/);
    expect(result.reason).toContain('http/protobuf');
    expect(fail({ ...on, OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: 'grpc' }).env_var).toBe(
      'OTEL_EXPORTER_OTLP_METRICS_PROTOCOL',
    );
  });

  it('an unknown protocol is refused', () => {
    const result = fail({ ...on, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/xml' });
    expect(result.env_var).toBe('OTEL_EXPORTER_OTLP_PROTOCOL');
    expect(result.reason).toContain('http/json');
  });

  it('is not validated while OTLP is off (a host-wide grpc setting does not block boot)', () => {
    expect(ok({ OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' })).toEqual({ ok: true, otlp: null, targetInfo: false });
  });
});

describe('parseOtelEnv: interval and timeout', () => {
  const on = { OTEL_METRICS_EXPORTER: 'otlp' };

  it('reads both in milliseconds', () => {
    const env = { ...on, OTEL_METRIC_EXPORT_INTERVAL: '15000', OTEL_METRIC_EXPORT_TIMEOUT: '5000' };
    expect(ok(env).otlp).toEqual({ protocol: 'http/protobuf', intervalMs: 15_000, timeoutMs: 5_000 });
  });

  it('clamps a timeout above the interval to the interval', () => {
    expect(ok({ ...on, OTEL_METRIC_EXPORT_INTERVAL: '200' }).otlp).toMatchObject({ intervalMs: 200, timeoutMs: 200 });
    const env = { ...on, OTEL_METRIC_EXPORT_INTERVAL: '1000', OTEL_METRIC_EXPORT_TIMEOUT: '5000' };
    expect(ok(env).otlp).toMatchObject({ intervalMs: 1000, timeoutMs: 1000 });
  });

  it('treats empty as unset', () => {
    const env = { ...on, OTEL_METRIC_EXPORT_INTERVAL: '', OTEL_METRIC_EXPORT_TIMEOUT: ' ' };
    expect(ok(env).otlp).toEqual(DEFAULT_OTLP);
  });

  it.each(['0', '-5', '1.5', '1e3', 'abc', '10s', '2147483648'])('refuses %j', (value) => {
    for (const envVar of ['OTEL_METRIC_EXPORT_INTERVAL', 'OTEL_METRIC_EXPORT_TIMEOUT']) {
      const result = fail({ ...on, [envVar]: value });
      expect(result.env_var).toBe(envVar);
      expect(result.reason).toMatch(/milliseconds/);
    }
  });

  it('accepts the largest timer delay Node supports', () => {
    expect(ok({ ...on, OTEL_METRIC_EXPORT_INTERVAL: '2147483647' }).otlp?.intervalMs).toBe(2_147_483_647);
  });

  it('is not validated while OTLP is off', () => {
    expect(ok({ OTEL_METRIC_EXPORT_INTERVAL: 'soon' }).otlp).toBeNull();
  });
});

describe('parseOtelEnv: PYRYCODE_RELAY_METRICS_TARGET_INFO', () => {
  it('unset or empty → off, exactly "1" → on', () => {
    expect(ok({}).targetInfo).toBe(false);
    expect(ok({ PYRYCODE_RELAY_METRICS_TARGET_INFO: '' }).targetInfo).toBe(false);
    expect(ok({ PYRYCODE_RELAY_METRICS_TARGET_INFO: '1' }).targetInfo).toBe(true);
  });

  it.each(['0', 'true', 'yes', ' 1', '2'])('refuses %j', (value) => {
    const result = fail({ PYRYCODE_RELAY_METRICS_TARGET_INFO: value });
    expect(result.env_var).toBe('PYRYCODE_RELAY_METRICS_TARGET_INFO');
    expect(result.reason).toMatch(/"1"/);
  });
});

describe('parseOtelEnv: OTEL_RESOURCE_ATTRIBUTES', () => {
  it('is refused when malformed and something exports the resource', () => {
    for (const env of [
      { OTEL_METRICS_EXPORTER: 'otlp', OTEL_RESOURCE_ATTRIBUTES: 'a=b=c' },
      { PYRYCODE_RELAY_METRICS_TARGET_INFO: '1', OTEL_RESOURCE_ATTRIBUTES: 'a=%zz' },
    ]) {
      const result = fail(env);
      expect(result.env_var).toBe('OTEL_RESOURCE_ATTRIBUTES');
      expect(result.reason).toMatch(/entry 1/);
    }
  });

  it('is ignored while nothing exports the resource', () => {
    expect(ok({ OTEL_RESOURCE_ATTRIBUTES: 'a=b=c' })).toEqual({ ok: true, otlp: null, targetInfo: false });
  });
});

describe('parseResourceAttributes', () => {
  it('parses, trims, skips blank entries and percent-decodes keys and values', () => {
    expect(parseResourceAttributes(' deployment.environment = prod ,, team=a%2Cb%3Dc ,k%20x=%E2%9C%93')).toEqual({
      ok: true,
      attributes: { 'deployment.environment': 'prod', team: 'a,b=c', 'k x': '✓' },
    });
  });

  it.each([
    ['missing =', 'a', /entry 1 is not key=value/],
    ['unencoded =', 'a=1,b=2=3', /entry 2 is not key=value/],
    ['empty key', '=v', /entry 1 has an empty key/],
    ['bad percent-encoding', 'a=%E2%9C', /entry 1 has an invalid percent-encoding/],
    ['too long', `a=${'x'.repeat(256)}`, /longer than 255/],
  ])('%s → error', (_name, raw, reason) => {
    const result = parseResourceAttributes(raw);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toMatch(reason);
  });
});

describe('buildResource', () => {
  it('defaults service.name to pyrycode-relay and sets service.version', () => {
    const attrs = buildResource({}, '1.2.3').attributes;
    expect(attrs['service.name']).toBe('pyrycode-relay');
    expect(attrs['service.version']).toBe('1.2.3');
    expect(attrs['telemetry.sdk.language']).toBe('nodejs');
    expect(attrs['telemetry.sdk.name']).toBe('opentelemetry');
  });

  it('does not read process.env', () => {
    const saved = process.env.OTEL_SERVICE_NAME;
    process.env.OTEL_SERVICE_NAME = 'from-process-env';
    try {
      expect(buildResource({}, 'v').attributes['service.name']).toBe('pyrycode-relay');
    } finally {
      if (saved === undefined) delete process.env.OTEL_SERVICE_NAME;
      else process.env.OTEL_SERVICE_NAME = saved;
    }
  });

  it('uses OTEL_SERVICE_NAME', () => {
    expect(buildResource({ OTEL_SERVICE_NAME: 'relay-eu' }, 'v').attributes['service.name']).toBe('relay-eu');
  });

  it('takes service.name from OTEL_RESOURCE_ATTRIBUTES when OTEL_SERVICE_NAME is unset or empty', () => {
    const env = { OTEL_RESOURCE_ATTRIBUTES: 'service.name=relay%20attr' };
    expect(buildResource(env, 'v').attributes['service.name']).toBe('relay attr');
    expect(buildResource({ ...env, OTEL_SERVICE_NAME: '' }, 'v').attributes['service.name']).toBe('relay attr');
  });

  it('OTEL_SERVICE_NAME wins over service.name in OTEL_RESOURCE_ATTRIBUTES', () => {
    const env = { OTEL_SERVICE_NAME: 'relay-env', OTEL_RESOURCE_ATTRIBUTES: 'service.name=relay-attr' };
    expect(buildResource(env, 'v').attributes['service.name']).toBe('relay-env');
  });

  it('adds every OTEL_RESOURCE_ATTRIBUTES pair, percent-decoded', () => {
    const env = { OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=staging,region=eu%2Cwest,note=a%3Db' };
    const attrs = buildResource(env, '9.9.9').attributes;
    expect(attrs).toMatchObject({
      'service.name': 'pyrycode-relay',
      'service.version': '9.9.9',
      'deployment.environment': 'staging',
      region: 'eu,west',
      note: 'a=b',
    });
  });

  it('keeps the build version even if OTEL_RESOURCE_ATTRIBUTES names another one', () => {
    const env = { OTEL_RESOURCE_ATTRIBUTES: 'service.version=0.0.0-fake' };
    expect(buildResource(env, '1.0.0').attributes['service.version']).toBe('1.0.0');
  });

  it('discards a malformed OTEL_RESOURCE_ATTRIBUTES as a whole (OpenTelemetry spec)', () => {
    const env = { OTEL_RESOURCE_ATTRIBUTES: 'good=1,bad=x=y,service.name=nope' };
    const attrs = buildResource(env, 'v').attributes;
    expect(attrs['good']).toBeUndefined();
    expect(attrs['service.name']).toBe('pyrycode-relay');
  });

  it('orders service.name, service.version, then the operator pairs', () => {
    const env = { OTEL_RESOURCE_ATTRIBUTES: 'zeta=1,alpha=2', OTEL_SERVICE_NAME: 's' };
    expect(Object.keys(buildResource(env, 'v').attributes).slice(0, 4)).toEqual([
      'service.name',
      'service.version',
      'zeta',
      'alpha',
    ]);
  });
});
