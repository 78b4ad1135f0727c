// A real OTLP/HTTP metrics receiver for tests: node:http on 127.0.0.1, ephemeral port.
// It records every request (headers, raw body, gunzipped body) and answers like a collector:
// 200 `{}` (application/json) to JSON requests, 200 with an empty application/x-protobuf body to
// protobuf requests, or a configured failure status.

import http from 'node:http';
import zlib from 'node:zlib';

export interface ReceivedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  /** The bytes as sent (possibly gzip-compressed). */
  raw: Buffer;
  /** The bytes after undoing Content-Encoding: gzip. */
  body: Buffer;
}

export interface OtlpReceiver {
  /** Base URL, e.g. http://127.0.0.1:43123 (no trailing slash). */
  readonly url: string;
  readonly port: number;
  readonly requests: ReceivedRequest[];
  /** Answer every following request with this status (and HTTP reason phrase); 200 restores normal answers. */
  setStatus(status: number, reason?: string): void;
  close(): Promise<void>;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const requests: ReceivedRequest[] = [];
  let status = 200;
  let reason: string | undefined;

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      let body = raw;
      if (req.headers['content-encoding'] === 'gzip') {
        try {
          body = zlib.gunzipSync(raw);
        } catch {
          body = Buffer.alloc(0);
        }
      }
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, raw, body });
      if (status !== 200) {
        res.statusCode = status;
        if (reason !== undefined) res.statusMessage = reason;
        res.setHeader('Content-Type', 'text/plain');
        res.end('rejected by test receiver\n');
        return;
      }
      if (String(req.headers['content-type']).includes('json')) {
        res.setHeader('Content-Type', 'application/json');
        res.end('{}');
      } else {
        res.setHeader('Content-Type', 'application/x-protobuf');
        res.end();
      }
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('receiver has no TCP address');
  const port = address.port;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    setStatus(next: number, nextReason?: string) {
      status = next;
      reason = nextReason;
    },
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

/** A loopback port with nothing listening on it (bound, then released). */
export async function unusedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return address.port;
}

// ---- Reading an OTLP/HTTP JSON export payload ----

interface OtlpPoint {
  asDouble?: number;
  asInt?: string | number;
  attributes?: { key: string; value: { stringValue?: string } }[];
}
interface OtlpPayload {
  resourceMetrics: {
    scopeMetrics: {
      metrics: { name: string; gauge?: { dataPoints: OtlpPoint[] }; sum?: { dataPoints: OtlpPoint[] } }[];
    }[];
  }[];
}

/** Sum of the points of metric `name` whose attributes include all of `attrs`. */
export function otlpSum(payload: unknown, name: string, attrs: Record<string, string> = {}): number {
  let total = 0;
  for (const rm of (payload as OtlpPayload).resourceMetrics) {
    for (const sm of rm.scopeMetrics) {
      for (const m of sm.metrics) {
        if (m.name !== name) continue;
        for (const p of m.sum?.dataPoints ?? m.gauge?.dataPoints ?? []) {
          const ok = Object.entries(attrs).every(([k, v]) =>
            p.attributes?.some((a) => a.key === k && a.value.stringValue === v),
          );
          if (ok) total += p.asDouble ?? Number(p.asInt);
        }
      }
    }
  }
  return total;
}
