// The daemon pushes the relay's own metrics over OTLP/HTTP to a collector (here a real HTTP
// receiver on loopback), beside its Prometheus endpoint, and flushes a final export on SIGTERM.

import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { cleanEnv, freePort, startDaemon, type DaemonHandle } from '../helpers/daemon.js';
import { startOtlpReceiver, type OtlpReceiver } from '../helpers/otlp-receiver.js';
import { binaryHeaders } from '../helpers/relay.js';
import { waitFor } from '../helpers/wait.js';

interface OtlpJson {
  resourceMetrics: {
    resource: { attributes: { key: string; value: { stringValue?: string } }[] };
    scopeMetrics: {
      metrics: {
        name: string;
        description: string;
        gauge?: { dataPoints: { asDouble?: number; asInt?: string | number }[] };
        sum?: {
          isMonotonic: boolean;
          dataPoints: {
            asDouble?: number;
            asInt?: string | number;
            attributes: { key: string; value: { stringValue?: string } }[];
          }[];
        };
      }[];
    }[];
  }[];
}

let daemon: DaemonHandle | undefined;
let receiver: OtlpReceiver | undefined;
afterEach(async () => {
  await daemon?.stop();
  daemon = undefined;
  await receiver?.close();
  receiver = undefined;
});

function payloads(r: OtlpReceiver): OtlpJson[] {
  return r.requests.filter((q) => q.url === '/v1/metrics').map((q) => JSON.parse(q.body.toString('utf8')) as OtlpJson);
}

function pointValue(p: { asDouble?: number; asInt?: string | number }): number {
  return p.asDouble ?? Number(p.asInt);
}

/** The value of a metric (optionally one attribute cell) in one export. */
function otlpValue(payload: OtlpJson, name: string, attr?: [string, string]): number | undefined {
  for (const rm of payload.resourceMetrics) {
    for (const sm of rm.scopeMetrics) {
      for (const m of sm.metrics) {
        if (m.name !== name) continue;
        if (m.gauge) return pointValue(m.gauge.dataPoints[0]!);
        const point = m.sum?.dataPoints.find(
          (p) => attr === undefined || p.attributes.some((a) => a.key === attr[0] && a.value.stringValue === attr[1]),
        );
        return point === undefined ? undefined : pointValue(point);
      }
    }
  }
  return undefined;
}

describe('daemon OTLP export', () => {
  it('exports the relay metrics with its resource over http/json and flushes on SIGTERM', async () => {
    receiver = await startOtlpReceiver();
    const port = await freePort();
    const metricsPort = await freePort();
    daemon = startDaemon(
      [
        '--insecure-listen',
        `127.0.0.1:${port}`,
        '--metrics-listen',
        `127.0.0.1:${metricsPort}`,
        '--shutdown-timeout',
        '3s',
      ],
      cleanEnv({
        OTEL_METRICS_EXPORTER: 'otlp',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_METRIC_EXPORT_INTERVAL: '300',
        OTEL_SERVICE_NAME: 'relay-under-test',
        OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=ci,host.role=relay',
      }),
    );
    await daemon.waitStderr('msg="starting metrics listener"', 10_000);

    // Something to report: one binary holding a slot.
    const binary = new WebSocket(`ws://127.0.0.1:${port}/v1/server`, { headers: binaryHeaders('otlp-1') });
    binary.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      binary.once('open', () => resolve());
      binary.once('error', reject);
    });
    const withBinary = await waitFor(
      () => payloads(receiver!).find((p) => otlpValue(p, 'pyrycode_relay_connected_binaries') === 1),
      10_000,
      'an OTLP export showing connected_binaries = 1',
    );
    // Names, HELP and cells are the Prometheus ones; the resource carries the OTel env settings.
    expect(otlpValue(withBinary, 'pyrycode_relay_ws_upgrade_attempts_total', ['outcome', 'accept'])).toBeDefined();
    expect(otlpValue(withBinary, 'pyrycode_relay_frames_forwarded_total', ['direction', 'phone_to_binary'])).toBe(0);
    const attrs = Object.fromEntries(
      withBinary.resourceMetrics[0]!.resource.attributes.map((a) => [a.key, a.value.stringValue]),
    );
    expect(attrs['service.name']).toBe('relay-under-test');
    expect(attrs['service.version']).toMatch(/^\d+\.\d+\.\d+/);
    expect(attrs['deployment.environment']).toBe('ci');
    expect(attrs['host.role']).toBe('relay');
    const metricNames = new Set(
      withBinary.resourceMetrics.flatMap((rm) => rm.scopeMetrics.flatMap((sm) => sm.metrics.map((m) => m.name))),
    );
    expect([...metricNames].sort()).toEqual([
      'pyrycode_relay_build_info',
      'pyrycode_relay_bytes_forwarded_total',
      'pyrycode_relay_bytes_received_total',
      'pyrycode_relay_connected_binaries',
      'pyrycode_relay_connected_phones',
      'pyrycode_relay_connections_closed_total',
      'pyrycode_relay_frames_dropped_total',
      'pyrycode_relay_frames_forwarded_total',
      'pyrycode_relay_frames_received_total',
      'pyrycode_relay_grace_expiries_total',
      'pyrycode_relay_grace_reclaims_total',
      'pyrycode_relay_http_errors_total',
      'pyrycode_relay_log_lines_dropped_total',
      'pyrycode_relay_log_lines_suppressed_total',
      'pyrycode_relay_phones_parked',
      'pyrycode_relay_rate_limit_table_full_total',
      'pyrycode_relay_ready',
      'pyrycode_relay_register_failures_total',
      'pyrycode_relay_upgrade_rejections_total',
      'pyrycode_relay_ws_upgrade_attempts_total',
    ]);

    // Shutdown: the binary gets 1001, and the last export (after the drain) shows it gone.
    const closed = new Promise<number>((resolve) => binary.once('close', (code) => resolve(code)));
    const before = receiver.requests.length;
    daemon.child.kill('SIGTERM');
    expect(await closed).toBe(1001);
    const exit = await daemon.waitExit(10_000);
    expect(exit.code).toBe(0);
    expect(receiver.requests.length).toBeGreaterThan(before);
    const last = payloads(receiver).at(-1)!;
    expect(otlpValue(last, 'pyrycode_relay_connected_binaries')).toBe(0);
    expect(daemon.stderr()).not.toContain('otlp_export_failed');
  });

  it('an unreachable collector is logged and never stops the relay', async () => {
    const port = await freePort();
    const dead = await freePort();
    daemon = startDaemon(
      ['--insecure-listen', `127.0.0.1:${port}`, '--metrics-listen', '', '--shutdown-timeout', '2s'],
      cleanEnv({
        OTEL_METRICS_EXPORTER: 'otlp',
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${dead}`,
        OTEL_EXPORTER_OTLP_TIMEOUT: '200',
        OTEL_METRIC_EXPORT_INTERVAL: '300',
        OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer SECRET-OTLP-MARKER',
      }),
    );
    await daemon.waitStderr('msg=otlp_export_failed', 15_000);
    // The relay still serves.
    const res = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(res.status).toBe(200);
    daemon.child.kill('SIGTERM');
    const exit = await daemon.waitExit(15_000);
    expect(exit.code).toBe(0);
    expect(daemon.stderr()).not.toContain('SECRET-OTLP-MARKER');
  });
});
