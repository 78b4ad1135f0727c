// Command line and environment → RelayConfig, or a refusal (exit 2, one ERROR line).
//
// Pure: reads only its arguments (argv, env, homeDir), touches no file and no process state, and never throws. Flags
// follow Go's `flag` package (docs/decisions.md, "Command line and configuration"); validation runs in a fixed order
// and the first failure wins (see parseConfig).

import { join } from 'node:path';
import { parseDuration } from '../duration.js';
import type { LogFields, LogFormat } from '../log.js';
import type { FcmServiceAccount } from '../push/fcm.js';
import { checkListenAddress, checkMetricsListen, METRICS_LISTEN_FIX } from './addresses.js';
import { parseArgs } from './args.js';
import { DEFAULT_ACME_DIRECTORY, DEFAULT_CERT_CACHE_DIR } from './defaults.js';
import { ENV_FCM_CREDENTIALS, ENV_FLY_APP_NAME, ENV_PRODUCTION, ENV_SINGLE_INSTANCE } from './environment.js';
import { FLAG_SPECS, FLAGS, type FlagName } from './flags.js';
import { checkCluster } from './cluster.js';
import { checkFcmCredentials, FCM_REFUSAL_REASON } from './push-env.js';
import { REFUSAL_EVENTS } from './refusals.js';
import type { ListenAddress, Mode, ParseOutcome, RelayConfig } from './types.js';
import { usage } from './usage.js';
import { checkAcmeDirectory, checkDomain, checkDuration, checkLogFormat, checkPositiveInt } from './values.js';

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
        // Never echoed: a refused URL may carry a password (user info) or a token (fragment).
        '(withheld)',
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

  // Two listeners on one address pass every check above, then the second fails to bind (exit 1
  // after a drain): refuse it here, in one line.
  const listeners: [string, ListenAddress][] = [
    mode === 'insecure' ? ['--insecure-listen', insecureListen!] : ['--https-listen', httpsListen],
  ];
  if (mode === 'autocert') listeners.push(['--http-listen', httpListen]);
  if (metricsListen !== null) listeners.push(['--metrics-listen', metricsListen]);
  for (let i = 0; i < listeners.length; i++) {
    for (let j = i + 1; j < listeners.length; j++) {
      const [a, x] = listeners[i]!;
      const [b, y] = listeners[j]!;
      if (x.port !== 0 && x.port === y.port && (x.host === y.host || isWildcard(x.host) || isWildcard(y.host))) {
        refuse(REFUSAL_EVENTS.conflictingFlags, { reason: `${a} and ${b} name the same port (${x.port})` });
      }
    }
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
      ? join(home, DEFAULT_CERT_CACHE_DIR)
      : join(DEFAULT_CERT_CACHE_DIR);

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

/** A listener host that binds every address of its family ('' is ":PORT"). */
function isWildcard(host: string): boolean {
  return host === '' || host === '0.0.0.0' || host === '::';
}
