// Command line and environment → RelayConfig, or a refusal (exit 2, one ERROR line).
//
// Pure: reads only its arguments (argv, env, homeDir), touches no file and no process state, and
// never throws. Flags follow Go's `flag` package (relay-behaviour.md 9.1, DECISIONS.md "Command
// line"); validation runs in a fixed order and the first failure wins (see parseConfig).
//
// Secrets: PYRYCODE_RELAY_FCM_CREDENTIALS is never echoed. Its refusal carries only a fixed reason,
// and every parse of it runs inside a try/catch whose error is discarded (JSON.parse and
// createPrivateKey messages can quote the input).

import { createPrivateKey } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { join } from 'node:path';

import { formatDuration, parseDuration } from '../duration.js';
import type { FcmServiceAccount } from '../push/fcm.js';
import type { LogFields, LogFormat } from '../log.js';

export type Mode = 'insecure' | 'tls' | 'autocert';

/** A listen address. host '' means all interfaces (Go ":8080"); IPv6 hosts carry no brackets. */
export interface ListenAddress {
  host: string;
  port: number;
}

export interface RelayConfig {
  mode: Mode;
  /** Public listener: --insecure-listen (insecure) or --https-listen (tls). */
  listen: ListenAddress;
  tlsCertFile: string | null;
  tlsKeyFile: string | null;
  /** Autocert mode: the certificate's only name, lowercase without a trailing dot; '' otherwise. */
  domain: string;
  certCache: string;
  /** Autocert mode: the ACME directory URL (--acme-directory). */
  acmeDirectory: string;
  httpsListen: ListenAddress;
  httpListen: ListenAddress;
  httpsProxyProtocol: boolean;
  /** null = disabled (--metrics-listen=""). */
  metricsListen: ListenAddress | null;
  trustXForwardedFor: boolean;
  maxConnections: number;
  gracePeriodMs: number;
  heartbeatIntervalMs: number;
  probeTimeoutMs: number;
  maxPhonesPerServer: number;
  rateLimitBurst: number;
  rateLimitIntervalMs: number;
  shutdownTimeoutMs: number;
  /** Time between failing /readyz and closing peers on a drain (0 = none). */
  drainDelayMs: number;
  /** --metrics-runtime: export Node runtime series. */
  metricsRuntime: boolean;
  logFormat: LogFormat;
  /** PYRYCODE_RELAY_PRODUCTION=1 */
  production: boolean;
  /** PYRYCODE_RELAY_SINGLE_INSTANCE=1 */
  singleInstanceBypass: boolean;
  /** FLY_APP_NAME or '' */
  flyAppName: string;
  fcmCredentials: FcmServiceAccount | null;
  /** Cluster mode (--cluster or PYRYCODE_RELAY_CLUSTER_URL); null = one process. */
  cluster: ClusterConfig | null;
}

/** Cluster mode settings (docs/operations.md "Cluster mode"). Secrets come from the environment
 * only (a flag would show in `ps`) and are never logged. */
export interface ClusterConfig {
  /** nats:// or tls:// URLs without credentials. */
  servers: string[];
  /** --instance-id, or null: main.ts derives a stable one from the host name and listen port. */
  instanceId: string | null;
  leaseMs: number;
  user?: string;
  pass?: string;
  token?: string;
  credsFile?: string;
  tls: { caFile?: string; certFile?: string; keyFile?: string } | null;
}

export type ParseOutcome =
  | { kind: 'run'; config: RelayConfig }
  | { kind: 'version' }
  | { kind: 'help'; text: string }
  /** Exit 2, logged as one ERROR line `event` with `fields`, in `logFormat`. */
  | { kind: 'refuse'; event: string; fields: LogFields; logFormat: LogFormat };

/** Event names of every refusal parseConfig can return. */
export const REFUSAL_EVENTS = {
  commandLine: 'refusing to start: invalid command line',
  noMode: 'refusing to start: no listener mode',
  conflictingFlags: 'refusing to start: conflicting flags',
  invalidFlagValue: 'refusing to start: invalid flag value',
  invalidListenerAddress: 'refusing to start: invalid listener address',
  invalidMetricsListen: 'refusing to start: invalid --metrics-listen address',
  invalidEnv: 'refusing to start: invalid env-var config',
  multiInstance: 'refusing to start: multi-instance deploy detected',
  insecureInProduction: 'refusing to start: --insecure-listen is not allowed in production mode',
} as const;

export const ENV_PRODUCTION = 'PYRYCODE_RELAY_PRODUCTION';
export const ENV_SINGLE_INSTANCE = 'PYRYCODE_RELAY_SINGLE_INSTANCE';
export const ENV_FCM_CREDENTIALS = 'PYRYCODE_RELAY_FCM_CREDENTIALS';
export const ENV_FLY_APP_NAME = 'FLY_APP_NAME';
export const ENV_FCM_ENDPOINT = 'PYRYCODE_RELAY_FCM_ENDPOINT';
export const ENV_FCM_TOKEN_URL = 'PYRYCODE_RELAY_FCM_TOKEN_URL';
export const ENV_CLUSTER_URL = 'PYRYCODE_RELAY_CLUSTER_URL';
export const ENV_CLUSTER_USER = 'PYRYCODE_RELAY_CLUSTER_USER';
export const ENV_CLUSTER_PASSWORD = 'PYRYCODE_RELAY_CLUSTER_PASSWORD';
export const ENV_CLUSTER_TOKEN = 'PYRYCODE_RELAY_CLUSTER_TOKEN';
/** Smallest --cluster-lease: renewals run every third of it. */
export const MIN_CLUSTER_LEASE_MS = 300;
const INSTANCE_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

export const DEFAULT_FCM_TOKEN_URI = 'https://oauth2.googleapis.com/token';
/** Base URL of the FCM HTTP v1 API (PYRYCODE_RELAY_FCM_ENDPOINT overrides it). */
export const DEFAULT_FCM_ENDPOINT = 'https://fcm.googleapis.com';
export const FCM_URL_REFUSAL_REASON =
  'not an absolute http:// or https:// URL without user info, query or fragment (value withheld)';
export const FCM_TOKEN_URI_REFUSAL_REASON =
  "the key's token_uri is not an absolute http:// or https:// URL without user info, query or fragment (value withheld)";
export const FCM_REFUSAL_REASON = 'not a service-account JSON key (value withheld)';
/** Let's Encrypt production (--acme-directory default). */
export const DEFAULT_ACME_DIRECTORY = 'https://acme-v02.api.letsencrypt.org/directory';
export const METRICS_LISTEN_FIX =
  'use a loopback IP literal with a non-zero port, e.g. 127.0.0.1:9090 or [::1]:9090, or --metrics-listen="" to disable';

/** Upper bound for integer flags: far beyond any sane setting, and exact in every computation. */
export const MAX_INT_FLAG = 2_147_483_647;
/** Duration flags must lie in [MIN_DURATION_MS, MAX_DURATION_MS]. */
export const MIN_DURATION_MS = 1;
export const MAX_DURATION_MS = 24 * 60 * 60 * 1000;

// ---------------------------------------------------------------------------------------------
// Flag table

type FlagName =
  | 'insecure-listen'
  | 'tls-cert'
  | 'tls-key'
  | 'domain'
  | 'cert-cache'
  | 'acme-directory'
  | 'https-listen'
  | 'http-listen'
  | 'https-proxy-protocol'
  | 'metrics-listen'
  | 'trust-x-forwarded-for'
  | 'max-connections'
  | 'grace-period'
  | 'heartbeat-interval'
  | 'probe-timeout'
  | 'max-phones-per-server'
  | 'rate-limit-burst'
  | 'rate-limit-interval'
  | 'shutdown-timeout'
  | 'drain-delay'
  | 'metrics-runtime'
  | 'log-format'
  | 'cluster'
  | 'instance-id'
  | 'cluster-lease'
  | 'cluster-creds'
  | 'cluster-tls-ca'
  | 'cluster-tls-cert'
  | 'cluster-tls-key'
  | 'version';

type FlagKind = 'string' | 'bool' | 'int' | 'duration' | 'addr';

interface FlagSpec {
  name: FlagName;
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

const FLAG_SPECS: readonly FlagSpec[] = [
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
    defShown: '$HOME/.pyrycode-relay/certs',
    help: 'ACME certificate cache directory, mode 0700 (autocert mode)',
  },
  {
    name: 'acme-directory',
    kind: 'string',
    arg: 'URL',
    def: DEFAULT_ACME_DIRECTORY,
    help: 'ACME directory URL, https:// (autocert mode only)',
  },
  {
    name: 'https-listen',
    kind: 'addr',
    arg: 'ADDR',
    def: ':443',
    help: 'HTTPS listener address (static-TLS and autocert modes)',
  },
  {
    name: 'http-listen',
    kind: 'addr',
    arg: 'ADDR',
    def: ':80',
    help: 'ACME HTTP-01 listener address (autocert mode only)',
  },
  {
    name: 'https-proxy-protocol',
    kind: 'bool',
    arg: '',
    def: 'false',
    help: 'require a PROXY v2 header on the HTTPS listener (autocert mode only)',
  },
  {
    name: 'metrics-listen',
    kind: 'string',
    arg: 'ADDR',
    def: '127.0.0.1:9090',
    help: 'loopback IP:port of the Prometheus /metrics listener; "" disables',
  },
  {
    name: 'trust-x-forwarded-for',
    kind: 'bool',
    arg: '',
    def: 'false',
    help: 'use the left-most X-Forwarded-For entry as the client IP for rate limiting',
  },
  { name: 'max-connections', kind: 'int', arg: 'N', def: '20', help: 'global cap on live WebSocket connections (> 0)' },
  {
    name: 'grace-period',
    kind: 'duration',
    arg: 'DUR',
    def: '30s',
    help: 'how long a disconnected binary keeps its server-id and phones',
  },
  {
    name: 'heartbeat-interval',
    kind: 'duration',
    arg: 'DUR',
    def: '30s',
    help: 'ping interval on every WebSocket; the pong wait equals it',
  },
  {
    name: 'probe-timeout',
    kind: 'duration',
    arg: 'DUR',
    def: '10s',
    help: 'liveness probe of the incumbent binary on a conflicting claim',
  },
  { name: 'max-phones-per-server', kind: 'int', arg: 'N', def: '16', help: 'phones allowed per server-id (> 0)' },
  { name: 'rate-limit-burst', kind: 'int', arg: 'N', def: '20', help: 'per-IP upgrade token bucket size (> 0)' },
  { name: 'rate-limit-interval', kind: 'duration', arg: 'DUR', def: '6s', help: 'per-IP token refill interval' },
  { name: 'shutdown-timeout', kind: 'duration', arg: 'DUR', def: '10s', help: 'drain deadline after SIGTERM/SIGINT' },
  {
    name: 'drain-delay',
    kind: 'duration',
    arg: 'DUR',
    def: '0s',
    allowZero: true,
    help: 'on SIGTERM/SIGINT, fail /readyz this long before closing peers (0 = close at once)',
  },
  {
    name: 'metrics-runtime',
    kind: 'bool',
    arg: '',
    def: 'false',
    help: 'also export Node runtime series (event-loop delay, heap, RSS, open handles)',
  },
  { name: 'log-format', kind: 'string', arg: 'text|json', def: 'text', help: 'log line format on stderr' },
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
    def: '15s',
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
];

const FLAGS: ReadonlyMap<string, FlagSpec> = new Map(FLAG_SPECS.map((f) => [f.name, f]));

// ---------------------------------------------------------------------------------------------
// Go flag-package parsing

type ArgParse =
  | { kind: 'ok'; set: Map<FlagName, string> }
  | { kind: 'help' }
  | { kind: 'error'; err: string; set: Map<FlagName, string> };

/** strconv.ParseBool */
function parseGoBool(s: string): boolean | null {
  switch (s) {
    case '1':
    case 't':
    case 'T':
    case 'true':
    case 'TRUE':
    case 'True':
      return true;
    case '0':
    case 'f':
    case 'F':
    case 'false':
    case 'FALSE':
    case 'False':
      return false;
    default:
      return null;
  }
}

/**
 * Go flag.FlagSet.Parse: `-x`/`--x`, `--x=v` or `--x v` (the next argument is taken even when it
 * starts with '-'), booleans by presence or `--x=<bool>`, `--` or the first non-flag argument ends
 * flag parsing. Repeated flags: last wins. Unlike Go, positional arguments are an error.
 */
function parseArgs(argv: readonly string[]): ArgParse {
  const set = new Map<FlagName, string>();
  let i = 0;
  while (i < argv.length) {
    const s = argv[i]!;
    if (s.length < 2 || s[0] !== '-') break; // first positional argument
    let minuses = 1;
    if (s[1] === '-') {
      minuses = 2;
      if (s.length === 2) {
        i++; // "--" terminates the flags
        break;
      }
    }
    let name = s.slice(minuses);
    if (name.length === 0 || name[0] === '-' || name[0] === '=') {
      return { kind: 'error', err: `bad flag syntax: ${s}`, set };
    }
    i++;
    let hasValue = false;
    let value = '';
    const eq = name.indexOf('=');
    if (eq > 0) {
      value = name.slice(eq + 1);
      hasValue = true;
      name = name.slice(0, eq);
    }
    const spec = FLAGS.get(name);
    if (spec === undefined) {
      if (name === 'help' || name === 'h') return { kind: 'help' };
      return { kind: 'error', err: `flag provided but not defined: -${name}`, set };
    }
    if (spec.kind === 'bool') {
      if (hasValue) {
        const b = parseGoBool(value);
        if (b === null) {
          return {
            kind: 'error',
            err: `invalid boolean value ${JSON.stringify(value)} for -${name}: parse error`,
            set,
          };
        }
        set.set(spec.name, b ? 'true' : 'false');
      } else {
        set.set(spec.name, 'true');
      }
      continue;
    }
    if (!hasValue && i < argv.length) {
      value = argv[i]!;
      i++;
      hasValue = true;
    }
    if (!hasValue) return { kind: 'error', err: `flag needs an argument: -${name}`, set };
    set.set(spec.name, value);
  }
  if (i < argv.length) {
    return {
      kind: 'error',
      err: `unexpected argument ${JSON.stringify(argv[i])}: this command takes flags only, and flag parsing stops at the first non-flag argument`,
      set,
    };
  }
  return { kind: 'ok', set };
}

// ---------------------------------------------------------------------------------------------
// Values

type Check<T> = { ok: true; value: T } | { ok: false; reason: string };

const INT_RE = /^[1-9][0-9]*$/;

function checkPositiveInt(s: string): Check<number> {
  if (s === '0') return { ok: false, reason: 'must be greater than zero' };
  if (!INT_RE.test(s)) {
    if (/^0[0-9]+$/.test(s)) {
      return { ok: false, reason: 'leading zeros are not allowed (Go would read the value as octal)' };
    }
    return { ok: false, reason: 'not a decimal integer (digits only, no sign, exponent or spaces)' };
  }
  if (s.length > 10 || Number(s) > MAX_INT_FLAG) {
    return { ok: false, reason: `must be at most ${MAX_INT_FLAG}` };
  }
  return { ok: true, value: Number(s) };
}

function checkDuration(s: string): Check<number> {
  const ms = parseDuration(s);
  if (ms === null) return { ok: false, reason: 'not a Go duration (examples: 250ms, 30s, 1m30s, 2h)' };
  if (ms <= 0) return { ok: false, reason: 'must be greater than zero' };
  if (ms < MIN_DURATION_MS) return { ok: false, reason: `must be at least ${formatDuration(MIN_DURATION_MS)}` };
  if (ms > MAX_DURATION_MS) return { ok: false, reason: `must be at most ${formatDuration(MAX_DURATION_MS)}` };
  return { ok: true, value: ms };
}

function checkLogFormat(s: string): Check<LogFormat> {
  if (s === 'text' || s === 'json') return { ok: true, value: s };
  return { ok: false, reason: 'must be "text" or "json"' };
}

const PORT_RE = /^[0-9]+$/;
const DNS_LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
const HOSTNAME_RE = new RegExp(`^${DNS_LABEL}(?:\\.${DNS_LABEL})*\\.?$`);

interface SplitAddress {
  host: string;
  port: number;
  bracketed: boolean;
}

/** net.SplitHostPort plus the listener rules of relay-behaviour.md 6.4 (port 1-65535, decimal). */
function splitHostPort(s: string): Check<SplitAddress> {
  if (s === '') return { ok: false, reason: 'address is empty' };
  let host: string;
  let portStr: string;
  let bracketed = false;
  if (s[0] === '[') {
    const end = s.indexOf(']');
    if (end < 0) return { ok: false, reason: "missing ']' in address" };
    host = s.slice(1, end);
    const after = s.slice(end + 1);
    if (host.includes('[') || after.includes('[') || after.includes(']')) {
      return { ok: false, reason: 'unexpected bracket in address' };
    }
    if (after === '') return { ok: false, reason: 'missing port in address' };
    if (after[0] !== ':') return { ok: false, reason: "unexpected characters after ']' in address" };
    portStr = after.slice(1);
    bracketed = true;
  } else {
    const last = s.lastIndexOf(':');
    if (last < 0) return { ok: false, reason: 'missing port in address' };
    host = s.slice(0, last);
    portStr = s.slice(last + 1);
    if (host.includes(':')) {
      return { ok: false, reason: 'too many colons in address (write IPv6 hosts in brackets, e.g. [::1]:9090)' };
    }
    if (host.includes('[') || host.includes(']')) return { ok: false, reason: 'unexpected bracket in address' };
  }
  if (portStr === '') return { ok: false, reason: 'port is empty' };
  if (!PORT_RE.test(portStr)) return { ok: false, reason: 'port must be a decimal number from 1 to 65535' };
  const port = Number(portStr);
  if (port === 0) return { ok: false, reason: 'port 0 is not allowed (the relay must bind a known port)' };
  if (port > 65535) return { ok: false, reason: 'port out of range (must be 1 to 65535)' };
  return { ok: true, value: { host, port, bracketed } };
}

/** A public listener address: host may be '', an IPv4 literal, a bracketed IPv6 literal or a DNS name. */
function checkListenAddress(s: string): Check<ListenAddress> {
  const split = splitHostPort(s);
  if (!split.ok) return split;
  const { host, port, bracketed } = split.value;
  if (bracketed) {
    if (!isIPv6(host)) return { ok: false, reason: 'brackets must hold an IPv6 literal' };
  } else if (host !== '' && !isIPv4(host)) {
    const labels = host.replace(/\.$/, '').split('.');
    if (/^[0-9]+$/.test(labels[labels.length - 1]!)) {
      // "010.0.0.1" or "127.1": the system resolver might read it as an (octal/short) IPv4 address.
      return { ok: false, reason: 'host is not a valid IPv4 address (four decimal octets, no leading zeros)' };
    }
    if (host.length > 253 || !HOSTNAME_RE.test(host)) {
      return { ok: false, reason: 'host is not an IP literal or a valid hostname' };
    }
  }
  return { ok: true, value: { host, port } };
}

/** 16 bytes of an IPv6 literal (no zone), or null. */
function ipv6Bytes(addr: string): number[] | null {
  if (!isIPv6(addr) || addr.includes('%')) return null;
  let text = addr;
  let tail: number[] = [];
  const lastColon = text.lastIndexOf(':');
  const lastPart = text.slice(lastColon + 1);
  if (lastPart.includes('.')) {
    if (!isIPv4(lastPart)) return null;
    tail = lastPart.split('.').map(Number);
    text = text.slice(0, lastColon + 1) + '0:0'; // placeholder groups, replaced below
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const parse = (h: string): number[] => (h === '' ? [] : h.split(':').map((g) => parseInt(g, 16)));
  const head = parse(halves[0]!);
  const rest = halves.length === 2 ? parse(halves[1]!) : [];
  const fill = halves.length === 2 ? 8 - head.length - rest.length : 0;
  const groups = [...head, ...new Array<number>(fill).fill(0), ...rest];
  if (groups.length !== 8 || groups.some((g) => !Number.isInteger(g) || g < 0 || g > 0xffff)) return null;
  const bytes = groups.flatMap((g) => [g >> 8, g & 0xff]);
  if (tail.length === 4) bytes.splice(12, 4, ...tail);
  return bytes;
}

/**
 * --metrics-listen: an IPv4 literal in 127.0.0.0/8 or the bracketed IPv6 literal ::1 (any spelling
 * of it, e.g. [0:0:0:0:0:0:0:1]), with a port 1-65535. Hostnames (localhost included) are refused:
 * what they resolve to can change between this check and the bind.
 *
 * IPv4-mapped IPv6 ([::ffff:127.0.0.1]) is refused although Go's IP.IsLoopback() says true: bound
 * through an AF_INET6 socket, whether it accepts anything depends on dual-stack settings
 * (IPV6_V6ONLY, net.ipv6.bindv6only, platforms without mapped addresses), so it is not a plain
 * loopback literal with one meaning; 127.0.0.1 says the same thing unambiguously. IPv6 zones and
 * bracketed IPv4 are refused for the same reason (one canonical spelling per address family).
 */
function checkMetricsListen(s: string): Check<ListenAddress> {
  const split = splitHostPort(s);
  if (!split.ok) return split;
  const { host, port, bracketed } = split.value;
  if (host === '') return { ok: false, reason: 'host is empty (would listen on all interfaces)' };
  if (bracketed) {
    if (isIPv4(host)) return { ok: false, reason: 'brackets are only for IPv6 literals' };
    if (!isIPv6(host)) return { ok: false, reason: 'host is not an IP literal' };
    if (host.includes('%')) return { ok: false, reason: 'IPv6 zones are not allowed' };
    const b = ipv6Bytes(host);
    if (b === null) return { ok: false, reason: 'host is not an IP literal' };
    if (b.slice(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) {
      return {
        ok: false,
        reason: 'IPv4-mapped IPv6 addresses are not allowed (write the IPv4 literal, e.g. 127.0.0.1)',
      };
    }
    if (!(b.slice(0, 15).every((x) => x === 0) && b[15] === 1)) {
      return { ok: false, reason: 'not a loopback address (must be in 127.0.0.0/8 or ::1)' };
    }
    return { ok: true, value: { host, port } };
  }
  if (!isIPv4(host)) {
    return {
      ok: false,
      reason:
        'host is not an IP literal (hostnames, localhost included, are refused: DNS can change between check and bind)',
    };
  }
  if (!host.startsWith('127.')) return { ok: false, reason: 'not a loopback address (must be in 127.0.0.0/8 or ::1)' };
  return { ok: true, value: { host, port } };
}

/**
 * --domain: a DNS name (letters, digits, hyphens; labels of 1-63 characters; at most 253 in all),
 * not an IP address; returned lowercase without a trailing dot. The ACME CA decides whether it
 * issues for the name (public CAs need a registered domain; a test CA may take `localhost`).
 */
function checkDomain(s: string): Check<string> {
  if (s === '') return { ok: false, reason: 'must not be empty' };
  if (isIPv4(s) || isIPv6(s) || s.startsWith('['))
    return { ok: false, reason: 'must be a DNS name, not an IP address' };
  if (s.includes('*'))
    return { ok: false, reason: 'wildcard names are not supported (HTTP-01 and TLS-ALPN-01 cannot validate them)' };
  const name = s.toLowerCase().replace(/\.$/, '');
  if (name.length > 253 || !HOSTNAME_RE.test(name)) return { ok: false, reason: 'not a valid DNS name' };
  const labels = name.split('.');
  if (/^[0-9]+$/.test(labels[labels.length - 1]!))
    return { ok: false, reason: 'the last label must not be all digits' };
  return { ok: true, value: name };
}

/** --acme-directory: an absolute https:// URL without user info or fragment (RFC 8555 6.1). */
function checkAcmeDirectory(s: string): boolean {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return false;
  }
  return (
    u.protocol === 'https:' &&
    u.hostname !== '' &&
    u.username === '' &&
    u.password === '' &&
    u.hash === '' &&
    !s.includes('#')
  );
}

/** Renders a ListenAddress the way it is written on the command line (`:443`, `[::1]:9090`). */
export function formatListenAddress(a: ListenAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

function checkFcmCredentials(raw: string): FcmServiceAccount | null {
  try {
    const key: unknown = JSON.parse(raw);
    if (typeof key !== 'object' || key === null || Array.isArray(key)) return null;
    const k = key as Record<string, unknown>;
    if (k['type'] !== 'service_account') return null;
    const clientEmail = k['client_email'];
    if (typeof clientEmail !== 'string' || clientEmail === '') return null;
    const pem = k['private_key'];
    if (typeof pem !== 'string' || pem === '') return null;
    const priv = createPrivateKey({ key: pem, format: 'pem' });
    if (priv.asymmetricKeyType !== 'rsa') return null;
    const tokenUri =
      typeof k['token_uri'] === 'string' && k['token_uri'] !== '' ? k['token_uri'] : DEFAULT_FCM_TOKEN_URI;
    const projectId = typeof k['project_id'] === 'string' ? k['project_id'] : '';
    return { clientEmail, privateKeyPem: pem, tokenUri, projectId };
  } catch {
    // The error text may quote the value: drop it.
    return null;
  }
}

/** An absolute http(s) URL without user info, query or fragment, or null. */
function checkHttpUrl(s: string): URL | null {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return null;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
  if (u.hostname === '' || u.username !== '' || u.password !== '' || u.search !== '' || u.hash !== '') return null;
  if (s.includes('?') || s.includes('#')) return null; // an empty query or fragment
  return u;
}

export interface PushEndpoints {
  /** Base URL of the FCM API; the send path /v1/projects/pyrycode-mobile/messages:send is appended. */
  fcmEndpoint: string;
  /** Where the OAuth2 JWT assertion is posted. */
  tokenUrl: string;
}

export type PushEnvResult = { ok: true; endpoints: PushEndpoints } | { ok: false; env_var: string; reason: string };

/**
 * PYRYCODE_RELAY_FCM_ENDPOINT (default https://fcm.googleapis.com) and PYRYCODE_RELAY_FCM_TOKEN_URL
 * (default: the key's token_uri, else https://oauth2.googleapis.com/token), checked whether or
 * not push is on. Each must be an absolute http:// or https:// URL without user info, query or
 * fragment; a refusal never echoes the value. With credentials and no override, the key's
 * token_uri must pass the same check. Read by main.ts after parseConfig (RelayConfig is unchanged).
 */
export function parsePushEnv(
  env: Record<string, string | undefined>,
  credentials: FcmServiceAccount | null,
): PushEnvResult {
  const refuse = (env_var: string, reason = FCM_URL_REFUSAL_REASON): PushEnvResult => ({ ok: false, env_var, reason });
  const endpoint = env[ENV_FCM_ENDPOINT];
  if (endpoint !== undefined && checkHttpUrl(endpoint) === null) return refuse(ENV_FCM_ENDPOINT);
  const tokenUrl = env[ENV_FCM_TOKEN_URL];
  if (tokenUrl !== undefined && checkHttpUrl(tokenUrl) === null) return refuse(ENV_FCM_TOKEN_URL);
  const effectiveTokenUrl = tokenUrl ?? credentials?.tokenUri ?? DEFAULT_FCM_TOKEN_URI;
  if (checkHttpUrl(effectiveTokenUrl) === null) return refuse(ENV_FCM_CREDENTIALS, FCM_TOKEN_URI_REFUSAL_REASON);
  return { ok: true, endpoints: { fcmEndpoint: endpoint ?? DEFAULT_FCM_ENDPOINT, tokenUrl: effectiveTokenUrl } };
}

// ---------------------------------------------------------------------------------------------
// parseConfig

class Refusal {
  constructor(
    readonly event: string,
    readonly fields: LogFields,
  ) {}
}

function modeFlag(set: Map<FlagName, string>): { insecure: boolean; tls: string | null; domain: boolean } {
  const tls = set.has('tls-cert') ? '--tls-cert' : set.has('tls-key') ? '--tls-key' : null;
  return { insecure: set.has('insecure-listen'), tls, domain: set.has('domain') };
}

/**
 * Parses argv (without the node and script paths) and env into a run/version/help/refuse outcome.
 *
 * Order (first failure wins): flag syntax (Go `flag` rules; positional arguments refused) →
 * help / --version → listener mode (exactly one of --insecure-listen, --tls-cert+--tls-key,
 * --domain; a mode counts as chosen when its flag is passed, even with an empty value) → flags that
 * do not apply to the chosen mode (explicitly passed, even if equal to the default) → flag values
 * (TLS file names; --domain, --cert-cache, --acme-directory; integers, durations, --log-format) → listener
 * addresses → --metrics-listen → env vars (PRODUCTION, SINGLE_INSTANCE, FCM_CREDENTIALS) →
 * single-instance check → production forbids --insecure-listen.
 *
 * homeDir defaults to env.HOME; the cert cache is `<home>/.pyrycode-relay/certs`, or the relative
 * `.pyrycode-relay/certs` without a home directory (like Go's os.UserHomeDir failing).
 */
export function parseConfig(argv: string[], env: Record<string, string | undefined>, homeDir?: string): ParseOutcome {
  const args = parseArgs(argv);
  if (args.kind === 'help') return { kind: 'help', text: usage() };
  const set = args.set;
  // The log format of a refusal: --log-format as parsed so far (Go stops at a syntax error, so a
  // later --log-format is not seen), if it is valid.
  const lf = set.get('log-format');
  const logFormat: LogFormat = lf === 'json' ? 'json' : 'text';
  if (args.kind === 'error') {
    return {
      kind: 'refuse',
      event: REFUSAL_EVENTS.commandLine,
      fields: { err: args.err, fix: 'run with --help for the list of flags' },
      logFormat,
    };
  }
  if (set.get('version') === 'true') return { kind: 'version' };
  try {
    return { kind: 'run', config: buildConfig(set, env, homeDir) };
  } catch (e) {
    if (e instanceof Refusal) return { kind: 'refuse', event: e.event, fields: e.fields, logFormat };
    // Unreachable by design; never let an exception (or its text) escape.
    return {
      kind: 'refuse',
      event: REFUSAL_EVENTS.commandLine,
      fields: { err: 'internal error while reading the configuration' },
      logFormat,
    };
  }
}

function buildConfig(
  set: Map<FlagName, string>,
  env: Record<string, string | undefined>,
  homeDir: string | undefined,
): RelayConfig {
  const get = (name: FlagName): string => set.get(name) ?? FLAGS.get(name)!.def;
  const refuse = (event: string, fields: LogFields): never => {
    throw new Refusal(event, fields);
  };

  // Listener mode.
  const m = modeFlag(set);
  const chosen = [m.insecure ? '--insecure-listen' : null, m.tls, m.domain ? '--domain' : null].filter(
    (x): x is string => x !== null,
  );
  if (chosen.length === 0) {
    refuse(REFUSAL_EVENTS.noMode, {
      reason: 'one of --insecure-listen, --tls-cert with --tls-key, or --domain is required',
    });
  }
  if (chosen.length > 1) {
    refuse(REFUSAL_EVENTS.conflictingFlags, {
      reason: `${chosen[0]} and ${chosen[1]} are mutually exclusive (choose one listener mode)`,
    });
  }
  if (m.tls !== null && set.has('tls-cert') !== set.has('tls-key')) {
    refuse(REFUSAL_EVENTS.conflictingFlags, {
      reason: set.has('tls-cert') ? '--tls-cert requires --tls-key' : '--tls-key requires --tls-cert',
    });
  }
  if (m.insecure) {
    for (const f of ['https-listen', 'http-listen', 'https-proxy-protocol', 'acme-directory'] as const) {
      if (set.has(f)) {
        refuse(REFUSAL_EVENTS.conflictingFlags, {
          reason: `--${f} cannot be used with --insecure-listen (it applies only to TLS modes)`,
        });
      }
    }
  }
  if (m.tls !== null) {
    for (const f of ['http-listen', 'https-proxy-protocol', 'acme-directory'] as const) {
      if (set.has(f)) {
        refuse(REFUSAL_EVENTS.conflictingFlags, {
          reason: `--${f} applies only to --domain (autocert mode), not to --tls-cert/--tls-key`,
        });
      }
    }
  }
  const mode: Mode = m.insecure ? 'insecure' : m.domain ? 'autocert' : 'tls';

  // Flag values.
  const invalidValue = (name: FlagName, value: string, reason: string, fix: string): never =>
    refuse(REFUSAL_EVENTS.invalidFlagValue, { flag: `--${name}`, value, reason, fix });
  if (mode === 'tls') {
    for (const f of ['tls-cert', 'tls-key'] as const) {
      if (get(f) === '')
        invalidValue(
          f,
          '',
          'must not be empty',
          `pass the path of a PEM file, e.g. --${f}=/etc/relay/${f === 'tls-cert' ? 'cert' : 'key'}.pem`,
        );
    }
  }
  let domain = '';
  if (mode === 'autocert') {
    const c = checkDomain(get('domain'));
    if (!c.ok)
      invalidValue(
        'domain',
        get('domain'),
        c.reason,
        'pass the public DNS name the certificate is for, e.g. --domain=relay.example.com',
      );
    else domain = c.value;
    if (set.has('cert-cache') && get('cert-cache') === '') {
      invalidValue(
        'cert-cache',
        '',
        'must not be empty',
        'pass a directory for the ACME account and certificate, e.g. --cert-cache=/var/lib/relay/autocert',
      );
    }
    if (!checkAcmeDirectory(get('acme-directory'))) {
      invalidValue(
        'acme-directory',
        get('acme-directory'),
        'not an absolute https:// URL without user info or fragment',
        `pass the CA's ACME directory URL, e.g. --acme-directory=${DEFAULT_ACME_DIRECTORY}`,
      );
    }
  }
  const ints = new Map<FlagName, number>();
  const durations = new Map<FlagName, number>();
  for (const spec of FLAG_SPECS) {
    const value = get(spec.name);
    if (spec.kind === 'int') {
      const c = checkPositiveInt(value);
      if (!c.ok)
        invalidValue(spec.name, value, c.reason, `pass a positive decimal integer, e.g. --${spec.name}=${spec.def}`);
      else ints.set(spec.name, c.value);
    } else if (spec.kind === 'duration') {
      const c =
        spec.allowZero === true && parseDuration(value) === 0 ? { ok: true as const, value: 0 } : checkDuration(value);
      if (!c.ok) {
        invalidValue(
          spec.name,
          value,
          c.reason,
          `pass a Go duration from ${spec.allowZero === true ? '0' : '1ms'} to 24h, e.g. --${spec.name}=${spec.def}`,
        );
      } else durations.set(spec.name, c.value);
    }
  }
  const logFormatCheck = checkLogFormat(get('log-format'));
  if (!logFormatCheck.ok) {
    invalidValue('log-format', get('log-format'), logFormatCheck.reason, 'use --log-format=text or --log-format=json');
  }

  // Listener addresses.
  const address = (name: FlagName): ListenAddress => {
    const value = get(name);
    const c = checkListenAddress(value);
    if (!c.ok) return refuse(REFUSAL_EVENTS.invalidListenerAddress, { flag: `--${name}`, value, reason: c.reason });
    return c.value;
  };
  const insecureListen = mode === 'insecure' ? address('insecure-listen') : null;
  const httpsListen = address('https-listen');
  const httpListen = address('http-listen');

  let metricsListen: ListenAddress | null = null;
  const metricsValue = get('metrics-listen');
  if (metricsValue !== '') {
    const c = checkMetricsListen(metricsValue);
    if (!c.ok)
      refuse(REFUSAL_EVENTS.invalidMetricsListen, { value: metricsValue, reason: c.reason, fix: METRICS_LISTEN_FIX });
    else metricsListen = c.value;
  }

  // Environment.
  const flagEnv = (name: string): boolean => {
    const v = env[name];
    if (v === undefined) return false;
    if (v === '1') return true;
    return refuse(REFUSAL_EVENTS.invalidEnv, {
      env_var: name,
      reason: `malformed-value: expected "1" or unset, got ${JSON.stringify(v)}`,
    });
  };
  const production = flagEnv(ENV_PRODUCTION);
  const singleInstanceBypass = flagEnv(ENV_SINGLE_INSTANCE);
  let fcmCredentials: FcmServiceAccount | null = null;
  const fcmRaw = env[ENV_FCM_CREDENTIALS];
  if (fcmRaw !== undefined) {
    fcmCredentials = checkFcmCredentials(fcmRaw);
    if (fcmCredentials === null)
      refuse(REFUSAL_EVENTS.invalidEnv, { env_var: ENV_FCM_CREDENTIALS, reason: FCM_REFUSAL_REASON });
  }
  const flyAppName = env[ENV_FLY_APP_NAME] ?? '';

  const cluster = checkCluster(set, get, env, durations.get('cluster-lease')!, refuse);
  // Cluster mode is the supported way to run more than one instance.
  if (flyAppName !== '' && !singleInstanceBypass && cluster === null) {
    refuse(REFUSAL_EVENTS.multiInstance, {
      env_var: ENV_FLY_APP_NAME,
      bypass_env_var: ENV_SINGLE_INSTANCE,
      fix: 'the registry lives in one process: run exactly one instance (fly scale count 1) and set PYRYCODE_RELAY_SINGLE_INSTANCE=1',
    });
  }
  if (production && mode === 'insecure') {
    refuse(REFUSAL_EVENTS.insecureInProduction, { env_var: ENV_PRODUCTION });
  }

  const home = homeDir !== undefined ? homeDir : (env['HOME'] ?? '');
  const certCache = set.has('cert-cache')
    ? get('cert-cache')
    : home !== ''
      ? join(home, '.pyrycode-relay', 'certs')
      : join('.pyrycode-relay', 'certs');

  return {
    mode,
    listen: insecureListen ?? httpsListen,
    tlsCertFile: mode === 'tls' ? get('tls-cert') : null,
    tlsKeyFile: mode === 'tls' ? get('tls-key') : null,
    domain,
    certCache,
    acmeDirectory: get('acme-directory'),
    httpsListen,
    httpListen,
    httpsProxyProtocol: get('https-proxy-protocol') === 'true',
    metricsListen,
    trustXForwardedFor: get('trust-x-forwarded-for') === 'true',
    maxConnections: ints.get('max-connections')!,
    gracePeriodMs: durations.get('grace-period')!,
    heartbeatIntervalMs: durations.get('heartbeat-interval')!,
    probeTimeoutMs: durations.get('probe-timeout')!,
    maxPhonesPerServer: ints.get('max-phones-per-server')!,
    rateLimitBurst: ints.get('rate-limit-burst')!,
    rateLimitIntervalMs: durations.get('rate-limit-interval')!,
    shutdownTimeoutMs: durations.get('shutdown-timeout')!,
    drainDelayMs: durations.get('drain-delay')!,
    metricsRuntime: get('metrics-runtime') === 'true',
    logFormat: logFormatCheck.ok ? logFormatCheck.value : 'text',
    production,
    singleInstanceBypass,
    flyAppName,
    fcmCredentials,
    cluster,
  };
}

const CLUSTER_ONLY_FLAGS = [
  'instance-id',
  'cluster-lease',
  'cluster-creds',
  'cluster-tls-ca',
  'cluster-tls-cert',
  'cluster-tls-key',
] as const;

/** Cluster mode: --cluster (or its env var) and the flags and env vars that only apply to it. */
function checkCluster(
  set: Map<FlagName, string>,
  get: (name: FlagName) => string,
  env: Record<string, string | undefined>,
  leaseMs: number,
  refuse: (event: string, fields: LogFields) => never,
): ClusterConfig | null {
  const raw = set.has('cluster') ? get('cluster') : (env[ENV_CLUSTER_URL] ?? '');
  const source = set.has('cluster') ? '--cluster' : ENV_CLUSTER_URL;
  if (raw === '') {
    for (const f of CLUSTER_ONLY_FLAGS) {
      if (set.has(f)) refuse(REFUSAL_EVENTS.conflictingFlags, { reason: `--${f} applies only with --cluster` });
    }
    for (const name of [ENV_CLUSTER_USER, ENV_CLUSTER_PASSWORD, ENV_CLUSTER_TOKEN]) {
      if (env[name] !== undefined)
        refuse(REFUSAL_EVENTS.invalidEnv, { env_var: name, reason: 'applies only with --cluster' });
    }
    return null;
  }
  const servers: string[] = [];
  for (const part of raw.split(',')) {
    const reason = checkNatsUrl(part.trim());
    if (reason !== null) {
      // The value is echoed only when it cannot carry a credential.
      const value = part.includes('@') ? '(withheld)' : part;
      refuse(REFUSAL_EVENTS.invalidFlagValue, {
        flag: source,
        value,
        reason,
        fix: 'pass nats://HOST:PORT (or tls://HOST:PORT), comma-separated; credentials go in PYRYCODE_RELAY_CLUSTER_USER/PASSWORD/TOKEN or --cluster-creds',
      });
    }
    servers.push(part.trim());
  }
  let instanceId: string | null = null;
  if (set.has('instance-id')) {
    instanceId = get('instance-id');
    if (!INSTANCE_ID_RE.test(instanceId)) {
      refuse(REFUSAL_EVENTS.invalidFlagValue, {
        flag: '--instance-id',
        value: instanceId,
        reason: 'must be 1 to 64 characters from A-Z, a-z, 0-9, _ and -',
        fix: 'pass a short unique name, e.g. --instance-id=relay-a',
      });
    }
  }
  if (leaseMs < MIN_CLUSTER_LEASE_MS) {
    refuse(REFUSAL_EVENTS.invalidFlagValue, {
      flag: '--cluster-lease',
      value: get('cluster-lease'),
      reason: `must be at least ${formatDuration(MIN_CLUSTER_LEASE_MS)}`,
      fix: 'pass a Go duration such as --cluster-lease=15s',
    });
  }
  const config: ClusterConfig = { servers, instanceId, leaseMs, tls: null };
  const user = env[ENV_CLUSTER_USER];
  const pass = env[ENV_CLUSTER_PASSWORD];
  const token = env[ENV_CLUSTER_TOKEN];
  if ((user === undefined) !== (pass === undefined)) {
    refuse(REFUSAL_EVENTS.invalidEnv, {
      env_var: user === undefined ? ENV_CLUSTER_PASSWORD : ENV_CLUSTER_USER,
      reason: `${ENV_CLUSTER_USER} and ${ENV_CLUSTER_PASSWORD} go together`,
    });
  }
  const methods = [user !== undefined, token !== undefined, set.has('cluster-creds')].filter(Boolean).length;
  if (methods > 1) {
    refuse(REFUSAL_EVENTS.conflictingFlags, {
      reason: 'choose one NATS authentication: user and password, token, or --cluster-creds',
    });
  }
  if (user !== undefined) {
    config.user = user;
    config.pass = pass;
  }
  if (token !== undefined) config.token = token;
  if (set.has('cluster-creds')) {
    if (get('cluster-creds') === '') {
      refuse(REFUSAL_EVENTS.invalidFlagValue, {
        flag: '--cluster-creds',
        value: '',
        reason: 'must not be empty',
        fix: 'pass the path of a NATS .creds file',
      });
    }
    config.credsFile = get('cluster-creds');
  }
  if (set.has('cluster-tls-cert') !== set.has('cluster-tls-key')) {
    refuse(REFUSAL_EVENTS.conflictingFlags, {
      reason: set.has('cluster-tls-cert')
        ? '--cluster-tls-cert requires --cluster-tls-key'
        : '--cluster-tls-key requires --cluster-tls-cert',
    });
  }
  if (set.has('cluster-tls-ca') || set.has('cluster-tls-cert') || servers.some((u) => u.startsWith('tls://'))) {
    const tls: { caFile?: string; certFile?: string; keyFile?: string } = {};
    if (set.has('cluster-tls-ca')) tls.caFile = get('cluster-tls-ca');
    if (set.has('cluster-tls-cert')) {
      tls.certFile = get('cluster-tls-cert');
      tls.keyFile = get('cluster-tls-key');
    }
    config.tls = tls;
  }
  return config;
}

/** One NATS server URL: nats:// or tls://, a host and a port, nothing else. */
function checkNatsUrl(s: string): string | null {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return 'not a URL (expected nats://HOST:PORT)';
  }
  if (u.protocol !== 'nats:' && u.protocol !== 'tls:') return 'scheme must be nats:// or tls://';
  if (u.username !== '' || u.password !== '')
    return 'credentials in the URL are refused (they would show in process lists and logs)';
  if (u.hostname === '') return 'host is empty';
  if (u.port === '') return 'port is missing (NATS listens on 4222 by default: write it)';
  if ((u.pathname !== '' && u.pathname !== '/') || u.search !== '' || u.hash !== '')
    return 'a path, query or fragment is not allowed';
  return null;
}

// ---------------------------------------------------------------------------------------------
// Help

/** Help text: every flag with its default and a one-line meaning, then the env vars. */
export function usage(): string {
  const rows = FLAG_SPECS.map((f) => {
    const left = `  --${f.name}${f.arg === '' ? '' : ' ' + f.arg}`;
    let def: string;
    if (f.defShown !== undefined) def = f.defShown;
    else if (f.kind === 'duration') def = formatDuration(parseDuration(f.def)!);
    else if (f.kind === 'bool' || f.kind === 'int') def = f.def;
    else def = JSON.stringify(f.def);
    const suffix = f.name === 'version' ? '' : ` (default ${def})`;
    return { left, right: f.help + suffix };
  });
  const width = Math.max(...rows.map((r) => r.left.length)) + 2;
  const envRows = [
    {
      left: `  ${ENV_PRODUCTION}=1`,
      right: 'production mode: refuses --insecure-listen, root, extra Linux capabilities',
    },
    { left: `  ${ENV_SINGLE_INSTANCE}=1`, right: 'acknowledges a single-instance deploy where FLY_APP_NAME is set' },
    { left: `  ${ENV_FCM_CREDENTIALS}`, right: 'Google service-account JSON key (the content); enables push wakes' },
    { left: `  ${ENV_FCM_ENDPOINT}`, right: `FCM API base URL for push wakes (default ${DEFAULT_FCM_ENDPOINT})` },
    { left: `  ${ENV_FCM_TOKEN_URL}`, right: "OAuth2 token URL for push wakes (default: the key's token_uri)" },
    { left: `  ${ENV_CLUSTER_URL}`, right: 'cluster mode: NATS URLs when --cluster is not given' },
    { left: `  ${ENV_CLUSTER_USER}, ${ENV_CLUSTER_PASSWORD}`, right: 'cluster mode: NATS user and password' },
    { left: `  ${ENV_CLUSTER_TOKEN}`, right: 'cluster mode: NATS token' },
  ];
  const envWidth = Math.max(...envRows.map((r) => r.left.length)) + 2;
  const lines = [
    'Usage: pyrycode-relay [flags]',
    '',
    'Content-blind WebSocket relay between a pyry binary and its phones.',
    'Exactly one listener mode is required: --insecure-listen ADDR, --tls-cert FILE with',
    "--tls-key FILE, or --domain D (TLS with a certificate from an ACME CA such as Let's Encrypt).",
    '',
    'Flags (-name or --name; values as --name=value or --name value; booleans as --name or',
    '--name=true|false; durations in Go syntax such as 250ms, 30s, 1m30s, from 1ms to 24h,',
    'and --drain-delay also takes 0):',
    ...rows.map((r) => r.left.padEnd(width) + r.right),
    '  -h, --help'.padEnd(width) + 'print this help and exit',
    '',
    'Environment:',
    ...envRows.map((r) => r.left.padEnd(envWidth) + r.right),
    '',
    'Exit status: 0 after --help, --version or a signal-triggered shutdown; 1 on a listener error;',
    '2 on a refused configuration.',
    '',
  ];
  return lines.join('\n');
}
