// GET /healthz (docs/operations.md, "Health and readiness checks";
// docs/decisions.md, "`/healthz` has since-boot counters"): any method, always 200, compact JSON in a fixed key
// order, no trailing newline. GET /readyz: 200 while serving, 503 from the moment a drain starts, with the same
// headers.

import type { RelayMetrics } from '../metrics/metrics.js';

export interface HealthSource {
  version: string;
  startedAtMs: number;
  counts(): { binaries: number; phones: number };
  metrics: RelayMetrics;
}

export const HEALTH_HEADERS = {
  'Content-Type': 'application/json; charset=utf-8',
  'Cache-Control': 'no-store',
} as const;

export function healthBody(source: HealthSource, nowMs: number = Date.now()): string {
  const { binaries, phones } = source.counts();
  const m = source.metrics;
  const uptime = Math.max(0, Math.floor((nowMs - source.startedAtMs) / 1000));
  return (
    `{"status":"ok","version":${JSON.stringify(source.version)}` +
    `,"connected_binaries":${binaries},"connected_phones":${phones},"uptime_seconds":${uptime}` +
    `,"binaries_since_boot":${m.binariesSinceBoot},"phones_since_boot":${m.phonesSinceBoot}` +
    `,"frames_forwarded_since_boot":${m.framesPhoneToBinary + m.framesBinaryToPhone}}`
  );
}

export const READY_BODY = '{"status":"ready"}';
export const DRAINING_BODY = '{"status":"draining"}';

/** /readyz: 200 `{"status":"ready"}` while serving, 503 `{"status":"draining"}` once a drain started. */
export function readiness(ready: boolean): { status: 200 | 503; body: string } {
  return ready ? { status: 200, body: READY_BODY } : { status: 503, body: DRAINING_BODY };
}
