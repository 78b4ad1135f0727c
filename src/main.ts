#!/usr/bin/env -S GLIBC_TUNABLES=glibc.malloc.trim_threshold=67108864:glibc.malloc.mmap_threshold=1048576 node --initial-old-space-size=64
// The daemon's composition root: flags -> checks -> telemetry -> relay -> listeners -> signals.
// Exit codes: 0 after a signal-triggered drain (or --version/--help), 1 when a listener fails,
// 2 when the configuration is refused.

import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import type { Server } from 'node:http';
import { createSecureContext } from 'node:tls';
import { buildTelemetry, parseOtelEnv, type MetricsServer, type Telemetry } from '../telemetry/index.js';
import { AutocertManager } from './tls/autocert.js';
import { prepareCertCache } from './tls/cert-cache.js';
import { formatListenAddress } from './config/addresses.js';
import { parseConfig } from './config/parse.js';
import { parsePushEnv } from './config/push-env.js';
import { REFUSAL_EVENTS } from './config/refusals.js';
import type { ListenAddress, RelayConfig } from './config/types.js';
import { formatDuration } from './duration.js';
import {
  checkListenerPorts,
  closeServer,
  createPlainServer,
  createSecureServer,
  createTlsServer,
  listen,
  requireHost,
} from './http/listeners.js';
import { createLogger, errText, type Logger } from './log.js';
import { preflight, readProcessFacts } from './config/preflight.js';
import { requireProxyV2 } from './http/proxy-protocol.js';
import { PUSH_CLOSE_TIMEOUT_MS } from './push/waker.js';
import { Relay } from './relay.js';
import type { ClusterFactory } from './session/directory.js';
import { registerRuntimeMetrics } from './metrics/runtime.js';
import { ignoreSignals, onDrainSignal, type DrainSignal } from './signals.js';
import { VERSION } from './version.js';

const EXIT_OK = 0;
const EXIT_LISTENER_FAILED = 1;
const EXIT_REFUSED = 2;
/** Upper bound for the final OTLP flush after the drain. */
const TELEMETRY_FLUSH_TIMEOUT_MS = 5_000;

async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  // First of all: SIGUSR1 must never start the inspector, not even during boot.
  let bootLog: Logger | undefined;
  ignoreSignals(() => (bootLog ??= createLogger()));
  const outcome = parseConfig(argv, env, safeHomedir());
  switch (outcome.kind) {
    case 'version':
      process.stdout.write(`${VERSION}\n`);
      return EXIT_OK;
    case 'help':
      process.stdout.write(outcome.text);
      return EXIT_OK;
    case 'refuse':
      createLogger(outcome.logFormat).error(outcome.event, outcome.fields);
      return EXIT_REFUSED;
  }
  const config = outcome.config;
  // One write per event-loop turn for the lines of that turn (a connection burst logs a line each).
  const log = createLogger(config.logFormat, process.stderr, { coalesce: true });
  bootLog = log;

  const refusal = preflight(config, readProcessFacts());
  if (refusal !== null) {
    log.error(refusal.event, refusal.fields);
    return EXIT_REFUSED;
  }
  const otel = parseOtelEnv(env);
  if (!otel.ok) {
    log.error(REFUSAL_EVENTS.invalidEnv, { env_var: otel.env_var, reason: otel.reason });
    return EXIT_REFUSED;
  }
  let tls: { cert: Buffer; key: Buffer } | null = null;
  if (config.mode === 'tls') {
    tls = loadTls(config, log);
    if (tls === null) return EXIT_REFUSED;
  }
  const pushEnv = parsePushEnv(env, config.fcmCredentials);
  if (!pushEnv.ok) {
    log.error(REFUSAL_EVENTS.invalidEnv, { env_var: pushEnv.env_var, reason: pushEnv.reason });
    return EXIT_REFUSED;
  }
  if (config.fcmCredentials === null) log.info('push off: PYRYCODE_RELAY_FCM_CREDENTIALS unset');

  // Autocert mode: the cache directory (0700 rules) and a cached certificate, before anything
  // listens. A failure here is a setup failure (exit 1), not a refused configuration.
  let autocert: AutocertManager | null = null;
  if (config.mode === 'autocert') {
    try {
      await prepareCertCache(config.certCache, log);
      autocert = new AutocertManager({
        domain: config.domain,
        cacheDir: config.certCache,
        directoryUrl: config.acmeDirectory,
        log,
      });
      await autocert.loadCached();
    } catch (err) {
      log.error('autocert setup failed', { cert_cache: config.certCache, err: errText(err) });
      return EXIT_LISTENER_FAILED;
    }
  }

  const telemetry = buildTelemetry({
    serviceVersion: VERSION,
    env,
    prometheus: config.metricsListen !== null,
    otlp: otel.otlp,
    targetInfo: otel.targetInfo,
    log,
  });
  // Cluster mode: connect to the engine before anything listens. The module (and the NATS
  // client behind it) is loaded only here, only with --cluster.
  let cluster: { factory: ClusterFactory; close(): Promise<void> } | null = null;
  if (config.cluster !== null) {
    const instanceId = config.cluster.instanceId ?? stableInstanceId(config.listen.port);
    const engine = config.cluster.servers.join(',');
    log.info('starting cluster mode', { instance_id: instanceId, engine });
    try {
      const mod = await import('./cluster/index.js');
      cluster = await withDeadline(
        mod.startCluster({ ...config.cluster, instanceId, env }, telemetry.meter, log),
        CLUSTER_START_TIMEOUT_MS,
      );
    } catch (err) {
      log.error('cluster engine unreachable', { engine, err: errText(err) });
      await telemetry.shutdown(TELEMETRY_FLUSH_TIMEOUT_MS);
      return EXIT_LISTENER_FAILED;
    }
  }
  const relay = new Relay(
    {
      cluster: cluster?.factory ?? null,
      gracePeriodMs: config.gracePeriodMs,
      heartbeatIntervalMs: config.heartbeatIntervalMs,
      probeTimeoutMs: config.probeTimeoutMs,
      maxPhonesPerServer: config.maxPhonesPerServer,
      maxConnections: config.maxConnections,
      rateLimitBurst: config.rateLimitBurst,
      rateLimitIntervalMs: config.rateLimitIntervalMs,
      trustXForwardedFor: config.trustXForwardedFor,
      proxyProtocol: autocert !== null && config.httpsProxyProtocol,
      ...certExpiry(tls, autocert),
      push:
        config.fcmCredentials === null
          ? null
          : {
              credentials: config.fcmCredentials,
              endpoint: pushEnv.endpoints.fcmEndpoint,
              tokenUrl: pushEnv.endpoints.tokenUrl,
            },
    },
    telemetry.meter,
    log,
  );
  if (config.metricsRuntime) registerRuntimeMetrics(telemetry.meter);
  // The public listener; in autocert mode HTTPS with the Host check (and PROXY v2 if asked for),
  // plus the HTTP-01 listener that answers only ACME challenges.
  let server: Server;
  let acmeServer: Server | null = null;
  if (autocert !== null) {
    const secure = createSecureServer(autocert.tlsOptions());
    server = secure as unknown as Server;
    relay.attach(server);
    requireHost(server, config.domain);
    if (config.httpsProxyProtocol) requireProxyV2(secure, { onReject: (reason) => relay.metrics.proxyRefused(reason) });
    acmeServer = createPlainServer();
    acmeServer.on('request', autocert.httpChallengeHandler);
    acmeServer.on('upgrade', autocert.httpUpgradeHandler);
  } else {
    server = tls === null ? createPlainServer() : createTlsServer(tls.cert, tls.key);
    relay.attach(server);
  }
  const servers = acmeServer === null ? [server] : [acmeServer, server];
  /** What a drain stops (see shutdown). */
  const running = { relay, servers, autocert, telemetry, config, log, cluster };

  // Listener port allowlist (docs/decisions.md, "The listener port allowlist is structural"): what is about to be
  // bound against what the flags call for.
  const expectedPorts = [config.listen.port];
  if (config.mode === 'autocert') expectedPorts.push(config.httpListen.port);
  if (config.metricsListen !== null) expectedPorts.push(config.metricsListen.port);
  const bindings: ListenAddress[] = [config.listen];
  if (acmeServer !== null) bindings.push(config.httpListen);
  if (config.metricsListen !== null) bindings.push(config.metricsListen);
  const ports = checkListenerPorts(
    expectedPorts,
    bindings.map((b) => b.port),
  );
  if (ports !== null) {
    log.error(REFUSAL_EVENTS.unexpectedListenerPorts, {
      unexpected_ports: ports.unexpected.join(','),
      expected_ports: ports.expected.join(','),
    });
    return EXIT_REFUSED;
  }

  // What ends the run: the first SIGTERM/SIGINT/SIGQUIT, or the first listener error.
  let stopWith: (trigger: 'signal' | 'listener') => void = () => {};
  const stopped = new Promise<'signal' | 'listener'>((resolve) => (stopWith = resolve));
  let drainSignal: DrainSignal | undefined;
  onDrainSignal((signal) => {
    drainSignal = signal;
    stopWith('signal');
  });

  const listenText = formatListenAddress(config.listen);
  if (config.mode === 'autocert') {
    log.info('starting', {
      version: VERSION,
      mode: config.mode,
      domain: config.domain,
      cert_cache: config.certCache,
      https_proxy_protocol: config.httpsProxyProtocol,
    });
  } else {
    log.info('starting', { version: VERSION, mode: config.mode, listen: listenText });
  }
  let metricsServer: MetricsServer | null = null;
  // The HTTP-01 listener first: it must answer before a certificate is ordered.
  const publicListeners: [Server, ListenAddress][] = [[server, config.listen]];
  if (acmeServer !== null) publicListeners.unshift([acmeServer, config.httpListen]);
  for (const [srv, address] of publicListeners) {
    const addrText = formatListenAddress(address);
    try {
      await listen(srv, address.host, address.port);
    } catch (err) {
      log.error('listener failed', { addr: addrText, err: errText(err) });
      return shutdown({ ...running, metricsServer: null, trigger: 'listener' });
    }
    srv.on('error', (err) => {
      log.error('listener failed', { addr: addrText, err: errText(err) });
      stopWith('listener');
    });
  }
  if (config.metricsListen !== null) {
    const metricsText = formatListenAddress(config.metricsListen);
    log.info('starting metrics listener', { listen: metricsText });
    try {
      metricsServer = await telemetry.startMetricsServer(config.metricsListen.host, config.metricsListen.port);
    } catch (err) {
      log.error('listener failed', { addr: metricsText, err: errText(err) });
      return shutdown({ ...running, metricsServer: null, trigger: 'listener' });
    }
    metricsServer.onError((err) => {
      log.error('listener failed', { addr: metricsText, err: errText(err) });
      stopWith('listener');
    });
  }

  // Listeners are up: order a certificate now if there is no usable cached one, and keep renewing.
  autocert?.start();

  const trigger = await stopped;
  if (trigger === 'signal') log.info('shutdown signal received; draining', { signal: drainSignal });
  return shutdown({ ...running, metricsServer, trigger });
}

/** What a drain stops, and why it runs. */
interface ShutdownOptions {
  relay: Relay;
  /** The public listeners (and the HTTP-01 one in autocert mode). */
  servers: Server[];
  /** null when --metrics-listen is off or the metrics listener failed to start. */
  metricsServer: MetricsServer | null;
  autocert: AutocertManager | null;
  telemetry: Telemetry;
  config: RelayConfig;
  log: Logger;
  trigger: 'signal' | 'listener';
  /** Cluster mode's engine connection, closed after the drain. */
  cluster: { close(): Promise<void> } | null;
}

async function shutdown(options: ShutdownOptions): Promise<number> {
  const { relay, servers, metricsServer, autocert, telemetry, config, log, trigger, cluster } = options;
  // A signal's drain line (with the signal's name) was logged by the caller.
  if (trigger === 'listener') log.error('listener error; draining');
  if (trigger === 'signal' && config.drainDelayMs > 0) {
    // /readyz fails now; peers are still served while load balancers stop routing here.
    relay.markNotReady();
    log.info('readiness failed; waiting before closing peers', { duration: formatDuration(config.drainDelayMs) });
    await new Promise((resolve) => setTimeout(resolve, config.drainDelayMs));
  }
  autocert?.stop();
  const deadline = Date.now() + config.shutdownTimeoutMs;
  const listenersClosed = Promise.all(servers.map((server) => closeServer(server)));
  const complete = await relay.drain(config.shutdownTimeoutMs);
  // Plain HTTP requests still in flight get what is left of the deadline, like the WebSockets; a
  // client that never finishes its request must not hold the process (once a server is closed,
  // Node no longer runs its header timeout, so closeServer would wait for that client forever).
  const listenersDone = await Promise.race([
    listenersClosed.then(() => true),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(false), Math.max(0, deadline - Date.now())).unref()),
  ]);
  if (complete && listenersDone) {
    log.info('shutdown complete');
  } else {
    for (const server of servers) server.closeAllConnections();
    log.warn('shutdown deadline exceeded; force-closed listeners');
    log.warn('drain incomplete');
  }
  await listenersClosed;
  await cluster?.close();
  // After the drain: refuse new wakes, cancel the sends in flight (each logs push_wake_send_failed
  // and counts send_failed) and wait for them, before the metrics listener and the final export go.
  await relay.push.close(Math.min(PUSH_CLOSE_TIMEOUT_MS, config.shutdownTimeoutMs));
  if (metricsServer !== null) await metricsServer.close();
  await telemetry.shutdown(Math.min(TELEMETRY_FLUSH_TIMEOUT_MS, config.shutdownTimeoutMs));
  return trigger === 'signal' ? EXIT_OK : EXIT_LISTENER_FAILED;
}

function loadTls(config: RelayConfig, log: Logger): { cert: Buffer; key: Buffer } | null {
  const read = (flag: string, file: string): Buffer | null => {
    try {
      return readFileSync(file);
    } catch (err) {
      log.error(REFUSAL_EVENTS.unreadableTlsFile, { flag, value: file, err: errCode(err) });
      return null;
    }
  };
  const cert = read('--tls-cert', config.tlsCertFile ?? '');
  if (cert === null) return null;
  const key = read('--tls-key', config.tlsKeyFile ?? '');
  if (key === null) return null;
  try {
    createSecureContext({ cert, key, minVersion: 'TLSv1.2' });
  } catch {
    // The library's message can quote key material; say only what is wrong.
    log.error(REFUSAL_EVENTS.invalidTlsFile, {
      reason: 'the files are not a matching PEM certificate and private key',
      fix: 'pass a PEM certificate chain with --tls-cert and its PEM private key with --tls-key',
    });
    return null;
  }
  return { cert, key };
}

/** The served certificate's expiry for the tls_cert_expiry_timestamp_seconds gauge (TLS modes). */
function certExpiry(
  tls: { cert: Buffer } | null,
  autocert: AutocertManager | null,
): { tlsCertExpiryMs?: () => number | null } {
  if (autocert !== null) return { tlsCertExpiryMs: () => autocert.certificate?.notAfterMs ?? null };
  if (tls === null) return {};
  const notAfterMs = Date.parse(new X509Certificate(tls.cert).validTo);
  return { tlsCertExpiryMs: () => notAfterMs };
}

function errCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'unreadable';
}

function safeHomedir(): string | undefined {
  try {
    return homedir() || undefined;
  } catch {
    return undefined;
  }
}

/** How long connecting to the cluster engine may take before the daemon exits 1 (not a hang). */
const CLUSTER_START_TIMEOUT_MS = 10_000;

function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${formatDuration(ms)}`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

/** A default --instance-id that survives restarts: the host name and the public port. */
function stableInstanceId(port: number): string {
  const host =
    hostname()
      .replace(/[^A-Za-z0-9_-]/g, '-')
      .slice(0, 50) || 'relay';
  return `${host}-${port}`;
}

main(process.argv.slice(2), process.env).then(
  (code) => process.exit(code),
  (err: unknown) => {
    // Written from an exit listener registered now, so it follows the log lines of this turn,
    // which the coalescing logger's earlier exit listener writes first.
    const text = `pyrycode-relay: fatal: ${errText(err)}\n`;
    process.once('exit', () => process.stderr.write(text));
    process.exit(EXIT_LISTENER_FAILED);
  },
);
