// Node runtime series, off by default (--metrics-runtime): event-loop delay, heap, RSS and open
// handles. All are observable gauges read at collection time; the event-loop delay histogram is
// sampled into fixed windows so that two readers (Prometheus and OTLP) see the same numbers.

import type { Meter } from '@opentelemetry/api';
import { monitorEventLoopDelay } from 'node:perf_hooks';

/** Event-loop delay percentiles cover the last window of this length. */
export const EVENT_LOOP_WINDOW_MS = 10_000;
/** Sampling resolution of the event-loop delay monitor. */
const EVENT_LOOP_RESOLUTION_MS = 10;

export const RUNTIME_HELP = {
  activeHandles:
    'Handles and requests keeping the Node.js event loop alive (sockets, servers, timers), at collection time.',
  eventLoopDelayMax: 'Largest event-loop delay seen in the last 10 s window, in seconds.',
  eventLoopDelayP50: 'Median event-loop delay over the last 10 s window, in seconds.',
  eventLoopDelayP99: '99th percentile event-loop delay over the last 10 s window, in seconds.',
  heapTotal: 'V8 heap size reserved by the process, in bytes, at collection time.',
  heapUsed: 'V8 heap in use, in bytes, at collection time.',
  rss: 'Resident set size of the process, in bytes, at collection time.',
} as const;

/** Registers the runtime gauges; returns a function that stops the sampler. */
export function registerRuntimeMetrics(meter: Meter): () => void {
  const histogram = monitorEventLoopDelay({ resolution: EVENT_LOOP_RESOLUTION_MS });
  histogram.enable();
  let window = { p50: 0, p99: 0, max: 0 };
  const sample = (): void => {
    // The histogram reports nanoseconds; an empty window reads as 0.
    const count = histogram.count;
    window =
      count === 0
        ? { p50: 0, p99: 0, max: 0 }
        : { p50: histogram.percentile(50) / 1e9, p99: histogram.percentile(99) / 1e9, max: histogram.max / 1e9 };
    histogram.reset();
  };
  const timer = setInterval(sample, EVENT_LOOP_WINDOW_MS);
  timer.unref();

  meter
    .createObservableGauge('pyrycode_relay_runtime_active_handles', { description: RUNTIME_HELP.activeHandles })
    .addCallback((r) => r.observe(process.getActiveResourcesInfo().length));
  meter
    .createObservableGauge('pyrycode_relay_runtime_event_loop_delay_max_seconds', {
      description: RUNTIME_HELP.eventLoopDelayMax,
    })
    .addCallback((r) => r.observe(window.max));
  meter
    .createObservableGauge('pyrycode_relay_runtime_event_loop_delay_p50_seconds', {
      description: RUNTIME_HELP.eventLoopDelayP50,
    })
    .addCallback((r) => r.observe(window.p50));
  meter
    .createObservableGauge('pyrycode_relay_runtime_event_loop_delay_p99_seconds', {
      description: RUNTIME_HELP.eventLoopDelayP99,
    })
    .addCallback((r) => r.observe(window.p99));
  meter
    .createObservableGauge('pyrycode_relay_runtime_heap_total_bytes', { description: RUNTIME_HELP.heapTotal })
    .addCallback((r) => r.observe(process.memoryUsage().heapTotal));
  meter
    .createObservableGauge('pyrycode_relay_runtime_heap_used_bytes', { description: RUNTIME_HELP.heapUsed })
    .addCallback((r) => r.observe(process.memoryUsage().heapUsed));
  meter
    .createObservableGauge('pyrycode_relay_runtime_rss_bytes', { description: RUNTIME_HELP.rss })
    .addCallback((r) => r.observe(process.memoryUsage.rss()));

  return () => {
    clearInterval(timer);
    histogram.disable();
  };
}
