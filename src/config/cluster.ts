// Cluster mode's flags and environment (docs/operations.md "Cluster mode"): --cluster (or
// PYRYCODE_RELAY_CLUSTER_URL), --instance-id, --cluster-lease, NATS credentials (environment
// only: a flag would show in `ps`) and TLS to NATS. Pure, like parse.ts; a refusal goes through the
// caller's `refuse`. No value that can carry a credential is ever echoed.

import { formatDuration } from '../duration.js';
import type { LogFields } from '../log.js';
import { ENV_CLUSTER_PASSWORD, ENV_CLUSTER_TOKEN, ENV_CLUSTER_URL, ENV_CLUSTER_USER } from './environment.js';
import type { FlagName } from './flags.js';
import { REFUSAL_EVENTS } from './refusals.js';
import type { ClusterConfig } from './types.js';

/** Smallest --cluster-lease: renewals run every third of it. */
export const MIN_CLUSTER_LEASE_MS = 300;
const INSTANCE_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

const CLUSTER_ONLY_FLAGS = [
  'instance-id',
  'cluster-lease',
  'cluster-creds',
  'cluster-tls-ca',
  'cluster-tls-cert',
  'cluster-tls-key',
] as const;

/** Cluster mode: --cluster (or its env var) and the flags and env vars that only apply to it. */
export function checkCluster(
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
      // Never echoed: a URL can carry a credential in its user info, its query or its fragment,
      // and a value that failed the check cannot be trusted to be cut up right.
      refuse(REFUSAL_EVENTS.invalidFlagValue, {
        flag: source,
        value: '(withheld)',
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
      env_var: user === undefined ? ENV_CLUSTER_USER : ENV_CLUSTER_PASSWORD,
      reason: `missing: ${ENV_CLUSTER_USER} and ${ENV_CLUSTER_PASSWORD} go together`,
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
