// The shapes of a parsed configuration: what parseConfig returns and what main.ts composes the
// daemon from. Types only, so every other file of the folder can read them.

import type { LogFields, LogFormat } from '../log.js';
import type { FcmServiceAccount } from '../push/fcm.js';

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
