// The relay under test in its own process: the same Relay, listener and telemetry the daemon
// composes (src/main.ts), with limits opened up for load, plus an IPC channel the orchestrator
// uses to read heap figures after a forced GC and the event loop's delay.
//
// Usage: node --expose-gc dist/bench/relay-process.js PORT METRICS_PORT|off [HEARTBEAT_MS]
// Prints "ready <port> <metricsPort>" on stdout.
// IPC: 'mem' -> RSS, heap (after a forced GC), counts, live connections; 'live' -> live connections;
//      'cpu' -> CPU time used so far (user + system, µs, all threads);
//      'eld-start' -> starts recording event-loop delay; 'eld-stop' -> its p99 and max in ms.

import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createNoopMeter } from '@opentelemetry/api';
import { buildTelemetry } from '../telemetry/index.js';
import { createPlainServer, listen } from '../src/http/listeners.js';
import { silentLogger } from '../src/log.js';
import { Relay } from '../src/relay.js';
import { DEFAULT_RELAY_OPTIONS } from '../src/config/defaults.js';

const port = Number(process.argv[2] ?? 0);
const metricsArg = process.argv[3] ?? 'off';
const metricsOn = metricsArg !== 'off';
const heartbeatIntervalMs = Number(process.argv[4] ?? DEFAULT_RELAY_OPTIONS.heartbeatIntervalMs);

const telemetry = metricsOn
  ? buildTelemetry({
      serviceVersion: 'bench',
      env: {},
      prometheus: true,
      otlp: null,
      targetInfo: false,
      log: silentLogger,
    })
  : null;
const relay = new Relay(
  // The daemon's defaults, with the connection cap and the rate limit opened up for load.
  { ...DEFAULT_RELAY_OPTIONS, maxConnections: 1_000_000, rateLimitBurst: 1_000_000, heartbeatIntervalMs },
  telemetry?.meter ?? createNoopMeter(),
  silentLogger,
);
const server = createPlainServer();
relay.attach(server);
const address = await listen(server, '127.0.0.1', port);
let metricsPort = 0;
if (telemetry !== null)
  metricsPort = (await telemetry.startMetricsServer('127.0.0.1', Number(metricsArg))).address().port;

/** Event-loop delay, sampled every 1 ms (the default 10 ms is coarse next to a 20 ms target). */
const loopDelay = monitorEventLoopDelay({ resolution: 1 });

process.on('message', (msg: unknown) => {
  if (msg === 'eld-start') {
    loopDelay.reset();
    loopDelay.enable();
    process.send?.({ ok: true });
  } else if (msg === 'eld-stop') {
    loopDelay.disable();
    process.send?.({ p99Ms: loopDelay.percentile(99) / 1e6, maxMs: loopDelay.max / 1e6 });
  } else if (msg === 'cpu') {
    const c = process.cpuUsage();
    process.send?.({ cpuUs: c.user + c.system });
  } else if (msg === 'live') {
    process.send?.({ live: relay.liveConnections });
  } else if (msg === 'mem') {
    (globalThis as { gc?: () => void }).gc?.();
    const m = process.memoryUsage();
    process.send?.({ rss: m.rss, heapUsed: m.heapUsed, counts: relay.counts(), live: relay.liveConnections });
  }
});
process.on('SIGTERM', () => process.exit(0));
process.stdout.write(`ready ${address.port} ${metricsPort}\n`);
