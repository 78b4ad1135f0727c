// Every default of the relay's configuration, in ONE place and in the form RelayConfig holds it.
// The flag table renders its defaults from these (flags.ts), DEFAULT_RELAY_OPTIONS (for in-process
// relays: tests and the bench) picks from them, and test/config/defaults.test.ts checks that
// parsing a command line that sets nothing but the listener mode yields exactly these values.
// The reference relay's defaults (docs/protocol.md, "Timings and the flags that change them";
// docs/operations.md, "Flags").

import type { RelayOptions } from '../relay.js';
import type { ListenAddress, RelayConfig } from './types.js';

/** The fields of RelayConfig that have a default (the rest are chosen per mode or read from env). */
export type ConfigDefaults = Pick<
  RelayConfig,
  | 'acmeDirectory'
  | 'httpsListen'
  | 'httpListen'
  | 'httpsProxyProtocol'
  | 'metricsListen'
  | 'trustXForwardedFor'
  | 'maxConnections'
  | 'gracePeriodMs'
  | 'heartbeatIntervalMs'
  | 'probeTimeoutMs'
  | 'maxPhonesPerServer'
  | 'rateLimitBurst'
  | 'rateLimitIntervalMs'
  | 'shutdownTimeoutMs'
  | 'drainDelayMs'
  | 'metricsRuntime'
  | 'logFormat'
> & { metricsListen: ListenAddress };

export const DEFAULTS: Readonly<ConfigDefaults> = Object.freeze({
  /** Let's Encrypt production. */
  acmeDirectory: 'https://acme-v02.api.letsencrypt.org/directory',
  httpsListen: Object.freeze({ host: '', port: 443 }),
  httpListen: Object.freeze({ host: '', port: 80 }),
  httpsProxyProtocol: false,
  metricsListen: Object.freeze({ host: '127.0.0.1', port: 9090 }),
  trustXForwardedFor: false,
  maxConnections: 20,
  gracePeriodMs: 30_000,
  heartbeatIntervalMs: 30_000,
  probeTimeoutMs: 10_000,
  maxPhonesPerServer: 16,
  rateLimitBurst: 20,
  rateLimitIntervalMs: 6_000,
  shutdownTimeoutMs: 10_000,
  drainDelayMs: 0,
  metricsRuntime: false,
  logFormat: 'text',
});

/** Let's Encrypt production (--acme-directory default). */
export const DEFAULT_ACME_DIRECTORY = DEFAULTS.acmeDirectory;
/** The autocert cache, under the home directory (or the working directory without one). */
export const DEFAULT_CERT_CACHE_DIR = '.pyrycode-relay/certs';
export const DEFAULT_FCM_TOKEN_URI = 'https://oauth2.googleapis.com/token';
/** Base URL of the FCM HTTP v1 API (PYRYCODE_RELAY_FCM_ENDPOINT overrides it). */
export const DEFAULT_FCM_ENDPOINT = 'https://fcm.googleapis.com';

/** The relay's options with every default (an in-process relay as the daemon would run it). */
export const DEFAULT_RELAY_OPTIONS: Readonly<RelayOptions> = Object.freeze({
  gracePeriodMs: DEFAULTS.gracePeriodMs,
  heartbeatIntervalMs: DEFAULTS.heartbeatIntervalMs,
  probeTimeoutMs: DEFAULTS.probeTimeoutMs,
  maxPhonesPerServer: DEFAULTS.maxPhonesPerServer,
  maxConnections: DEFAULTS.maxConnections,
  rateLimitBurst: DEFAULTS.rateLimitBurst,
  rateLimitIntervalMs: DEFAULTS.rateLimitIntervalMs,
  trustXForwardedFor: DEFAULTS.trustXForwardedFor,
});

/** --cluster-lease: an instance that cannot renew its lease for this long fences itself. */
export const DEFAULT_CLUSTER_LEASE_MS = 15_000;
