// Cluster mode's entry point, imported by main.ts ONLY through `await import()` when --cluster is
// given (test/architecture.test.ts holds this), so a relay without it never loads the NATS client.
// Connects to the engine within a bounded time, then hands the Relay a ClusterFactory.

import { randomBytes } from 'node:crypto';
import type { Meter } from '@opentelemetry/api';
import type { Logger } from '../log.js';
import { type ClusterGaugeSource, ClusterMetrics } from '../metrics/cluster-metrics.js';
import type { ClusterFactory } from '../session/directory.js';
import { NatsEngine, type NatsOptions } from './nats-engine.js';
import { ClusterRoleImpl } from './role.js';

/** Test-only fault hook (docs/operations.md "Cluster mode"): drop every Nth frame record towards
 * phones after numbering it, to prove gap detection. Never set it in production. */
export const ENV_TEST_DROP_EVERY_N = 'PYRYCODE_RELAY_TEST_CLUSTER_DROP_EVERY_N';

export interface ClusterStartOptions extends Omit<NatsOptions, 'boot'> {
  env: Record<string, string | undefined>;
}

export interface StartedCluster {
  factory: ClusterFactory;
  close(): Promise<void>;
}

const ZERO_SOURCE: ClusterGaugeSource = {
  engineConnected: false,
  instancesSeen: 0,
  remotePhones: 0,
  homedRemotePhones: 0,
  inflightBytes: 0,
};

/** Connects to the engine; throws (with a message free of credentials) when it cannot. */
export async function startCluster(options: ClusterStartOptions, meter: Meter, log: Logger): Promise<StartedCluster> {
  let source: ClusterGaugeSource = ZERO_SOURCE;
  const metrics = new ClusterMetrics(meter, {
    get engineConnected() {
      return source.engineConnected;
    },
    get instancesSeen() {
      return source.instancesSeen;
    },
    get remotePhones() {
      return source.remotePhones;
    },
    get homedRemotePhones() {
      return source.homedRemotePhones;
    },
    get inflightBytes() {
      return source.inflightBytes;
    },
  });
  const boot = randomBytes(8).toString('hex');
  const engine = await NatsEngine.open({ ...options, boot }, metrics);
  await engine.renewLease();
  const dropEveryN = Number(options.env[ENV_TEST_DROP_EVERY_N] ?? '0');
  if (dropEveryN > 0)
    log.warn('cluster test fault hook on: dropping frame records', { env_var: ENV_TEST_DROP_EVERY_N });
  const factory: ClusterFactory = (local, host) => {
    const role = new ClusterRoleImpl(
      {
        instanceId: options.instanceId,
        boot,
        leaseMs: options.leaseMs,
        bus: engine,
        store: engine,
        metrics,
        log,
        dropEveryN: Number.isSafeInteger(dropEveryN) && dropEveryN > 0 ? dropEveryN : 0,
      },
      local,
      host,
    );
    source = role;
    return role;
  };
  return { factory, close: () => engine.close() };
}
