// The relay under test in its own process: the same Relay, listener and telemetry the daemon
// composes (src/main.ts), with limits opened up for load, plus an IPC channel the orchestrator
// uses to read heap figures after a forced GC.
//
// Usage: node --expose-gc dist/bench/relay-process.js PORT METRICS_PORT|off
// Prints "ready <port> <metricsPort>" on stdout.

import { createNoopMeter } from '@opentelemetry/api';
import { buildTelemetry } from '../telemetry/index.js';
import { createPlainServer, listen } from '../src/http/listeners.js';
import { silentLogger } from '../src/log.js';
import { Relay } from '../src/relay.js';
import { DEFAULT_RELAY_OPTIONS } from '../src/config/defaults.js';

const port = Number(process.argv[2] ?? 0);
const metricsArg = process.argv[3] ?? 'off';
const metricsOn = metricsArg !== 'off';

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
  { ...DEFAULT_RELAY_OPTIONS, maxConnections: 1_000_000, rateLimitBurst: 1_000_000 },
  telemetry?.meter ?? createNoopMeter(),
  silentLogger,
);
const server = createPlainServer();
relay.attach(server);
const address = await listen(server, '127.0.0.1', port);
let metricsPort = 0;
if (telemetry !== null)
  metricsPort = (await telemetry.startMetricsServer('127.0.0.1', Number(metricsArg))).address().port;

process.on('message', (msg: unknown) => {
  if (msg === 'mem') {
    (globalThis as { gc?: () => void }).gc?.();
    const m = process.memoryUsage();
    process.send?.({ rss: m.rss, heapUsed: m.heapUsed, counts: relay.counts(), live: relay.liveConnections });
  }
});
process.on('SIGTERM', () => process.exit(0));
process.stdout.write(`ready ${address.port} ${metricsPort}\n`);
