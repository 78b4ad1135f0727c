// What every connection handler shares: the directory, the counters, the log and the timings.

import type { Logger } from '../log.js';
import type { Directory } from './directory.js';
import type { RelayMetrics } from '../metrics/metrics.js';
import type { PushWaker } from '../push/waker.js';

export interface RelayTimings {
  heartbeatIntervalMs: number;
  probeTimeoutMs: number;
  messageReadTimeoutMs: number;
}

export interface RelayContext {
  /** Where server-ids live: the in-memory Registry, or a cluster engine's directory. */
  readonly directory: Directory;
  readonly metrics: RelayMetrics;
  readonly log: Logger;
  readonly timings: RelayTimings;
  /** Push wakes (refuses every wake with "push off" when no credentials are configured). */
  readonly push: PushWaker;
  /** True once a drain started: probes abort, nothing new is admitted. */
  readonly draining: boolean;
}
