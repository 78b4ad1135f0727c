// docs/ops/otel-collector.yaml: the collector configuration for the relay's OTLP push, and the
// environment it tells operators to give the relay.
// No OpenTelemetry Collector is packaged in Debian, so the collector side gets a structural check
// with a deliberately small YAML reader (it refuses anything outside the subset the file uses), the
// rules `otelcol validate` applies to pipelines, and the protocol facts of the relay's exporter.
// The relay side is proven with the relay itself: its own parsers accept the documented variables,
// they are the ones its code (or its OTLP exporter package) reads, and the built daemon, started
// with exactly those variables, pushes its metrics over OTLP/HTTP protobuf to a receiver standing
// in for the collector.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { sourceFiles } from '../helpers/repo.js';
import { buildResource, parseOtelEnv } from '../../telemetry/index.js';
import { DAEMON_MAIN, withDaemon } from '../helpers/daemon.js';
import { type OtlpReceiver, startOtlpReceiver } from '../helpers/otlp-receiver.js';
import { waitFor } from '../helpers/wait.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const COLLECTOR_YAML = join(ROOT, 'docs/ops/otel-collector.yaml');
const ALERTS_YML = join(ROOT, 'docs/ops/alerts.yml');

// ---- A minimal YAML reader: nested maps, plain or quoted scalars, flow lists of plain scalars ----

type YamlValue = string | string[] | YamlMap;
interface YamlMap {
  [key: string]: YamlValue;
}

function stripComment(line: string): string {
  let quote: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote !== null) {
      if (c === quote) quote = null;
    } else if (c === '"' || c === "'") {
      quote = c;
    } else if (c === '#' && (i === 0 || /\s/.test(line[i - 1]!))) {
      return line.slice(0, i);
    }
  }
  return line;
}

function scalar(text: string, where: string): string | string[] {
  if (text.startsWith('[')) {
    if (!text.endsWith(']')) throw new Error(`${where}: unterminated flow list`);
    return text
      .slice(1, -1)
      .split(',')
      .map((item) => {
        const t = item.trim();
        if (!/^[\w./-]+$/.test(t)) throw new Error(`${where}: unsupported list item ${JSON.stringify(t)}`);
        return t;
      });
  }
  if (text.startsWith('"')) return JSON.parse(text) as string;
  if (text.startsWith("'")) {
    if (!text.endsWith("'") || text.length < 2) throw new Error(`${where}: unterminated quote`);
    return text.slice(1, -1).replace(/''/g, "'");
  }
  if (/^[&*!|>{%@`-]/.test(text) || /:\s/.test(text))
    throw new Error(`${where}: unsupported YAML ${JSON.stringify(text)}`);
  return text;
}

function parseYamlSubset(text: string): YamlMap {
  const root: YamlMap = {};
  const stack: { indent: number; map: YamlMap }[] = [{ indent: 0, map: root }];
  let open: { key: string; parent: YamlMap; indent: number } | null = null;
  text.split('\n').forEach((raw, index) => {
    const where = `line ${index + 1}`;
    if (raw.includes('\t')) throw new Error(`${where}: tab character`);
    const line = stripComment(raw).trimEnd();
    if (line.trim() === '') return;
    const indent = line.search(/\S/);
    if (open !== null) {
      const child: YamlMap = {};
      open.parent[open.key] = child;
      if (indent > open.indent) stack.push({ indent, map: child });
      open = null;
    }
    while (indent < stack[stack.length - 1]!.indent) stack.pop();
    const top = stack[stack.length - 1]!;
    if (indent !== top.indent) throw new Error(`${where}: inconsistent indentation`);
    const m = /^([\w./-]+):(?:\s+(.*))?$/.exec(line.trim());
    if (m === null) throw new Error(`${where}: outside the supported YAML subset: ${raw}`);
    const key = m[1]!;
    if (key in top.map) throw new Error(`${where}: duplicate key ${key}`);
    if (m[2] === undefined || m[2] === '') {
      top.map[key] = {};
      open = { key, parent: top.map, indent };
    } else {
      top.map[key] = scalar(m[2], where);
    }
  });
  return root;
}

function map(value: YamlValue | undefined, what: string): YamlMap {
  if (value === undefined || typeof value === 'string' || Array.isArray(value)) throw new Error(`${what} is not a map`);
  return value;
}

function list(value: YamlValue | undefined, what: string): string[] {
  if (!Array.isArray(value)) throw new Error(`${what} is not a list`);
  return value;
}

// ---- The file ----

const text = readFileSync(COLLECTOR_YAML, 'utf8');
const config = parseYamlSubset(text);

/** The `KEY=value` lines of the comment block that tells operators how to point the relay here. */
const documentedEnv: Record<string, string> = Object.fromEntries(
  [...text.matchAll(/^#\s+(OTEL_[A-Z_]+)=(\S+)\s*$/gm)].map((m) => [m[1]!, m[2]!]),
);

/** Where the relay's environment variables are read: its telemetry and core sources, and the OTLP
 * exporter package it constructs (which reads OTEL_EXPORTER_OTLP_* itself). */
function readersOf(name: string): string[] {
  const files = [
    ...['telemetry', 'src'].flatMap((dir) => sourceFiles(dir).map((f) => join(ROOT, f))),
    join(
      ROOT,
      'node_modules/@opentelemetry/otlp-exporter-base/build/src/configuration/otlp-node-http-env-configuration.js',
    ),
  ].filter((f) => existsSync(f));
  const read = new RegExp(`['"\`]${name}['"\`]|\\.${name}\\b`);
  return files.filter((f) => read.test(readFileSync(f, 'utf8'))).map((f) => f.slice(ROOT.length));
}

describe('docs/ops/otel-collector.yaml structure', () => {
  it('parses within the small YAML subset, and the reader refuses what it does not support', () => {
    expect(Object.keys(config).sort()).toEqual(['exporters', 'processors', 'receivers', 'service']);
    expect(() => parseYamlSubset('a:\n  - b\n')).toThrow(/subset|unsupported/);
    expect(() => parseYamlSubset('a: &x 1\n')).toThrow(/unsupported/);
    expect(() => parseYamlSubset('a:\n\tb: 1\n')).toThrow(/tab/);
    expect(() => parseYamlSubset('a: 1\na: 2\n')).toThrow(/duplicate/);
    expect(parseYamlSubset('a:\n  b: [x, y]\n  c: "q # not a comment"\nd: 1 # comment\n')).toEqual({
      a: { b: ['x', 'y'], c: 'q # not a comment' },
      d: '1',
    });
  });

  it('receives OTLP over HTTP on loopback only (the relay has no gRPC exporter)', () => {
    const protocols = map(map(map(config.receivers, 'receivers').otlp, 'receivers.otlp').protocols, 'protocols');
    expect(Object.keys(protocols)).toEqual(['http']);
    expect(map(protocols.http, 'http').endpoint).toBe('127.0.0.1:4318');
  });

  it('has a metrics pipeline whose every component is configured, and every configured component is used', () => {
    const pipelines = map(map(config.service, 'service').pipelines, 'service.pipelines');
    expect(Object.keys(pipelines)).toEqual(['metrics']);
    const used = { receivers: new Set<string>(), processors: new Set<string>(), exporters: new Set<string>() };
    for (const [name, pipeline] of Object.entries(pipelines)) {
      expect(name).toMatch(/^metrics(\/[\w-]+)?$/);
      for (const kind of ['receivers', 'processors', 'exporters'] as const) {
        const components = list(map(pipeline, name)[kind], `${name}.${kind}`);
        if (kind !== 'processors') expect(components.length, `${name}.${kind}`).toBeGreaterThan(0);
        for (const c of components) {
          expect(Object.keys(map(config[kind], kind)), `${name} uses ${kind} ${c}`).toContain(c);
          used[kind].add(c);
        }
      }
      // memory_limiter must run first to protect the collector.
      expect(list(map(pipeline, name).processors, 'processors')[0]).toBe('memory_limiter');
    }
    for (const kind of ['receivers', 'processors', 'exporters'] as const) {
      expect([...used[kind]].sort(), kind).toEqual(Object.keys(map(config[kind], kind)).sort());
    }
  });

  it('exports to Prometheus remote write and to the debug exporter', () => {
    const exporters = map(config.exporters, 'exporters');
    const rw = map(exporters.prometheusremotewrite, 'prometheusremotewrite');
    expect(new URL(rw.endpoint as string).pathname).toBe('/api/v1/write');
    expect(map(exporters.debug, 'debug').verbosity).toBe('basic');
  });
});

describe('the relay environment documented in docs/ops/otel-collector.yaml', () => {
  it('names the variables that turn OTLP on and point it at this collector, and only variables the relay reads', () => {
    for (const name of [
      'OTEL_METRICS_EXPORTER',
      'OTEL_EXPORTER_OTLP_ENDPOINT',
      'OTEL_EXPORTER_OTLP_PROTOCOL',
      'OTEL_METRIC_EXPORT_INTERVAL',
      'OTEL_SERVICE_NAME',
    ]) {
      expect(Object.keys(documentedEnv), name).toContain(name);
    }
    for (const name of Object.keys(documentedEnv)) {
      expect(readersOf(name), `${name} is read by the relay or its OTLP exporter`).not.toEqual([]);
    }
  });

  it("is accepted by the relay's own parser: OTLP on, http/protobuf, exports every 15 s", () => {
    const parsed = parseOtelEnv(documentedEnv);
    expect(parsed).toEqual({
      ok: true,
      otlp: { protocol: 'http/protobuf', intervalMs: 15_000, timeoutMs: 15_000 },
      targetInfo: false,
    });
  });

  it('points at the collector receiver, and names the service as the alert rules select it', () => {
    const endpoint = new URL(documentedEnv.OTEL_EXPORTER_OTLP_ENDPOINT!);
    const receiver = map(map(map(map(config.receivers, 'r').otlp, 'o').protocols, 'p').http, 'h').endpoint;
    expect(endpoint.protocol).toBe('http:');
    expect(endpoint.host).toBe(receiver);
    const attributes = buildResource(documentedEnv, '0.0.0-test').attributes;
    expect(attributes['service.name']).toBe('pyrycode-relay');
    expect(attributes['service.instance.id']).toBe('relay-1');
    expect(attributes['service.namespace']).toBeUndefined();
    // service.name becomes `job` on the remote-write path; the rules select that job.
    expect(readFileSync(ALERTS_YML, 'utf8')).toContain(`job="${String(attributes['service.name'])}"`);
  });
});

describe('the built daemon with the documented environment', () => {
  let receiver: OtlpReceiver | undefined;
  afterEach(async () => {
    await receiver?.close();
  });
  // Registered after the receiver's hook: after-hooks run in reverse, so the daemon stops first.
  const daemons = withDaemon();

  const built = existsSync(DAEMON_MAIN);
  it('is built when CI is set (npm test builds before it runs vitest)', () => {
    if (process.env.CI) expect(built, DAEMON_MAIN).toBe(true);
  });

  it.skipIf(!built)('pushes its metrics over OTLP/HTTP protobuf to the receiver at that endpoint', async () => {
    receiver = await startOtlpReceiver();
    // Only the endpoint (a test receiver instead of the collector) and the interval (not 15 s) change.
    const env = {
      ...documentedEnv,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_METRIC_EXPORT_INTERVAL: '200',
    };
    const { d: daemon } = await daemons.start([], { metricsListener: false, env });
    await waitFor(() => receiver!.requests.some((r) => r.url === '/v1/metrics'), 10_000, 'an OTLP export').catch(
      (err: unknown) => {
        throw new Error(`${(err as Error).message}\ndaemon stderr:\n${daemon.stderr()}`);
      },
    );
    const request = receiver.requests.find((r) => r.url === '/v1/metrics')!;
    expect(request.method).toBe('POST');
    expect(request.headers['content-type']).toBe('application/x-protobuf');
    const body = request.body.toString('latin1');
    for (const needle of [
      'pyrycode_relay_connected_binaries',
      'pyrycode_relay_frames_forwarded_total',
      'pyrycode-relay',
      'relay-1',
      'production',
    ]) {
      expect(body, needle).toContain(needle);
    }
  });
});
