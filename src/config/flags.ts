// The flag table: one entry per command-line flag, in --help order. The parser (args.ts, parse.ts)
// and the help text (usage.ts) are written from it, and FlagName is derived from it, so a flag is
// added in exactly one place. Defaults come from defaults.ts, rendered the way they are typed.

import { formatDuration } from '../duration.js';
import { formatListenAddress } from './addresses.js';
import { DEFAULT_CERT_CACHE_DIR, DEFAULT_CLUSTER_LEASE_MS, DEFAULTS } from './defaults.js';

type FlagKind = 'string' | 'bool' | 'int' | 'duration' | 'addr';

interface FlagSpec {
  name: string;
  kind: FlagKind;
  /** Value placeholder in the help text. */
  arg: string;
  /** Default as a flag value string ('' for none; booleans 'false'). */
  def: string;
  /** Default as shown in the help text, when it differs from `def`. */
  defShown?: string;
  /** Durations only: 0 is a valid value (it turns the feature off). */
  allowZero?: boolean;
  help: string;
}

const SPECS = [
  {
    name: 'insecure-listen',
    kind: 'addr',
    arg: 'ADDR',
    def: '',
    help: 'plain-HTTP mode: listen address, behind a TLS-terminating proxy',
  },
  {
    name: 'tls-cert',
    kind: 'string',
    arg: 'FILE',
    def: '',
    help: 'static-TLS mode: PEM certificate chain (requires --tls-key; listens on --https-listen)',
  },
  {
    name: 'tls-key',
    kind: 'string',
    arg: 'FILE',
    def: '',
    help: 'static-TLS mode: PEM private key (requires --tls-cert)',
  },
  {
    name: 'domain',
    kind: 'string',
    arg: 'D',
    def: '',
    help: 'autocert mode: the public domain; its certificate comes from the ACME CA (HTTP-01 on --http-listen, TLS-ALPN-01 on --https-listen)',
  },
  {
    name: 'cert-cache',
    kind: 'string',
    arg: 'DIR',
    def: '',
    defShown: `$HOME/${DEFAULT_CERT_CACHE_DIR}`,
    help: 'ACME certificate cache directory, mode 0700 (autocert mode)',
  },
  {
    name: 'acme-directory',
    kind: 'string',
    arg: 'URL',
    def: DEFAULTS.acmeDirectory,
    help: 'ACME directory URL, https:// (autocert mode only)',
  },
  {
    name: 'https-listen',
    kind: 'addr',
    arg: 'ADDR',
    def: formatListenAddress(DEFAULTS.httpsListen),
    help: 'HTTPS listener address (static-TLS and autocert modes)',
  },
  {
    name: 'http-listen',
    kind: 'addr',
    arg: 'ADDR',
    def: formatListenAddress(DEFAULTS.httpListen),
    help: 'ACME HTTP-01 listener address (autocert mode only)',
  },
  {
    name: 'https-proxy-protocol',
    kind: 'bool',
    arg: '',
    def: String(DEFAULTS.httpsProxyProtocol),
    help: 'require a PROXY v2 header on the HTTPS listener (autocert mode only)',
  },
  {
    name: 'metrics-listen',
    kind: 'string',
    arg: 'ADDR',
    def: formatListenAddress(DEFAULTS.metricsListen),
    help: 'loopback IP:port of the Prometheus /metrics listener; "" disables',
  },
  {
    name: 'trust-x-forwarded-for',
    kind: 'bool',
    arg: '',
    def: String(DEFAULTS.trustXForwardedFor),
    help: 'use the left-most X-Forwarded-For entry as the client IP for rate limiting',
  },
  {
    name: 'max-connections',
    kind: 'int',
    arg: 'N',
    def: String(DEFAULTS.maxConnections),
    help: 'global cap on live WebSocket connections (> 0)',
  },
  {
    name: 'grace-period',
    kind: 'duration',
    arg: 'DUR',
    def: formatDuration(DEFAULTS.gracePeriodMs),
    help: 'how long a disconnected binary keeps its server-id and phones',
  },
  {
    name: 'heartbeat-interval',
    kind: 'duration',
    arg: 'DUR',
    def: formatDuration(DEFAULTS.heartbeatIntervalMs),
    help: 'ping interval on every WebSocket; the pong wait equals it',
  },
  {
    name: 'probe-timeout',
    kind: 'duration',
    arg: 'DUR',
    def: formatDuration(DEFAULTS.probeTimeoutMs),
    help: 'liveness probe of the incumbent binary on a conflicting claim',
  },
  {
    name: 'max-phones-per-server',
    kind: 'int',
    arg: 'N',
    def: String(DEFAULTS.maxPhonesPerServer),
    help: 'phones allowed per server-id (> 0)',
  },
  {
    name: 'rate-limit-burst',
    kind: 'int',
    arg: 'N',
    def: String(DEFAULTS.rateLimitBurst),
    help: 'per-IP upgrade token bucket size (> 0)',
  },
  {
    name: 'rate-limit-interval',
    kind: 'duration',
    arg: 'DUR',
    def: formatDuration(DEFAULTS.rateLimitIntervalMs),
    help: 'per-IP token refill interval',
  },
  {
    name: 'shutdown-timeout',
    kind: 'duration',
    arg: 'DUR',
    def: formatDuration(DEFAULTS.shutdownTimeoutMs),
    help: 'drain deadline after SIGTERM/SIGINT',
  },
  {
    name: 'drain-delay',
    kind: 'duration',
    arg: 'DUR',
    def: formatDuration(DEFAULTS.drainDelayMs),
    allowZero: true,
    help: 'on SIGTERM/SIGINT, fail /readyz this long before closing peers (0 = close at once)',
  },
  {
    name: 'metrics-runtime',
    kind: 'bool',
    arg: '',
    def: String(DEFAULTS.metricsRuntime),
    help: 'also export Node runtime series (event-loop delay, heap, RSS, open handles)',
  },
  { name: 'log-format', kind: 'string', arg: 'text|json', def: DEFAULTS.logFormat, help: 'log line format on stderr' },
  {
    name: 'cluster',
    kind: 'string',
    arg: 'URLS',
    def: '',
    help: 'cluster mode: comma-separated nats:// or tls:// URLs of a NATS server with JetStream (or PYRYCODE_RELAY_CLUSTER_URL)',
  },
  {
    name: 'instance-id',
    kind: 'string',
    arg: 'ID',
    def: '',
    defShown: 'host name and listen port',
    help: "cluster mode: this instance's id, 1-64 of [A-Za-z0-9_-], unique in the cluster",
  },
  {
    name: 'cluster-lease',
    kind: 'duration',
    arg: 'DUR',
    def: formatDuration(DEFAULT_CLUSTER_LEASE_MS),
    help: 'cluster mode: instance lease; an instance that cannot renew it for this long fences itself',
  },
  {
    name: 'cluster-creds',
    kind: 'string',
    arg: 'FILE',
    def: '',
    help: 'cluster mode: NATS credentials file (JWT and NKey seed)',
  },
  { name: 'cluster-tls-ca', kind: 'string', arg: 'FILE', def: '', help: 'cluster mode: CA bundle for TLS to NATS' },
  {
    name: 'cluster-tls-cert',
    kind: 'string',
    arg: 'FILE',
    def: '',
    help: 'cluster mode: client certificate for TLS to NATS (requires --cluster-tls-key)',
  },
  {
    name: 'cluster-tls-key',
    kind: 'string',
    arg: 'FILE',
    def: '',
    help: 'cluster mode: client key for TLS to NATS (requires --cluster-tls-cert)',
  },
  { name: 'version', kind: 'bool', arg: '', def: 'false', help: 'print the version and exit' },
] as const satisfies readonly FlagSpec[];

/** Every flag's name, as the table spells it. */
export type FlagName = (typeof SPECS)[number]['name'];

/** A table entry, seen through its common shape. */
export type Flag = FlagSpec & { name: FlagName };

/** The flag table in --help order. */
export const FLAG_SPECS: readonly Flag[] = SPECS;
/** The flag table by name. */
export const FLAGS: ReadonlyMap<string, Flag> = new Map(FLAG_SPECS.map((f) => [f.name, f]));
