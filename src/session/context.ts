// What every connection handler shares: the registry, the counters, the log and the timings.

import type { Logger } from '../log.js';
import type { BinaryLink, PhoneLink } from './links.js';
import type { RelayMetrics } from '../metrics/metrics.js';
import type { PushWaker } from '../push/waker.js';
import type { Registry } from './registry.js';

export interface RelayTimings {
  heartbeatIntervalMs: number;
  probeTimeoutMs: number;
  messageReadTimeoutMs: number;
}

export interface RelayContext {
  readonly registry: Registry<BinaryLink, PhoneLink>;
  readonly metrics: RelayMetrics;
  readonly log: Logger;
  readonly timings: RelayTimings;
  /** Push wakes (refuses every wake with "push off" when no credentials are configured). */
  readonly push: PushWaker;
  /** True once a drain started: probes abort, nothing new is admitted. */
  readonly draining: boolean;
}
