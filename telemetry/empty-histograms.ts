// Histograms that appear in the Prometheus scrape from boot, with every bucket at 0.
//
// OpenTelemetry has no empty histogram: a histogram's family appears only with its first
// observation, so dashboards and alerts would see "no data" instead of zeros (for example the
// reclaim-latency histogram until the first reclaim). The relay core only sees the OTel API, so
// this is done here: the Meter handed to the core is a thin wrapper that notes the creation order
// of every instrument and the description and explicit bucket boundaries of every histogram;
// after each collect, a histogram that has no data point yet is added as one data point with
// count 0, sum 0 and zero buckets, at the place its creation order gives it (the scrape keeps
// creation order). Once it has a real data point, nothing is added. OTLP export is not affected.

import { ValueType, type Histogram, type Meter, type MetricOptions } from '@opentelemetry/api';
import {
  AggregationTemporality,
  DataPointType,
  type HistogramMetricData,
  type MetricData,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';

interface DeclaredHistogram {
  name: string;
  description: string;
  boundaries: number[];
}

export interface InstrumentTracker {
  /** The meter to hand to the core. */
  meter: Meter;
  /** Adds an empty data point for every declared histogram of `scopeName` without one. */
  fill(resourceMetrics: ResourceMetrics, scopeName: string): ResourceMetrics;
}

const CREATE_METHODS = [
  'createCounter',
  'createUpDownCounter',
  'createGauge',
  'createObservableGauge',
  'createObservableCounter',
  'createObservableUpDownCounter',
] as const;

export function trackInstruments(inner: Meter): InstrumentTracker {
  const order: string[] = [];
  const histograms: DeclaredHistogram[] = [];
  const meter: Meter = {
    createHistogram(name: string, options?: MetricOptions): Histogram {
      order.push(name);
      const boundaries = options?.advice?.explicitBucketBoundaries;
      if (boundaries !== undefined) histograms.push({ name, description: options?.description ?? '', boundaries });
      return inner.createHistogram(name, options);
    },
    addBatchObservableCallback: (callback, observables) => inner.addBatchObservableCallback(callback, observables),
    removeBatchObservableCallback: (callback, observables) =>
      inner.removeBatchObservableCallback(callback, observables),
  } as Meter;
  for (const method of CREATE_METHODS) {
    (meter as unknown as Record<string, unknown>)[method] = (name: string, options?: MetricOptions) => {
      order.push(name);
      return (inner[method] as (n: string, o?: MetricOptions) => unknown).call(inner, name, options);
    };
  }

  const fill = (resourceMetrics: ResourceMetrics, scopeName: string): ResourceMetrics => {
    if (histograms.length === 0) return resourceMetrics;
    const scope = resourceMetrics.scopeMetrics.find((s) => s.scope.name === scopeName);
    if (scope === undefined) return resourceMetrics;
    const metrics: MetricData[] = [...scope.metrics];
    for (const histogram of histograms) {
      if (metrics.some((m) => m.descriptor.name === histogram.name)) continue;
      const rank = order.indexOf(histogram.name);
      let at = metrics.findIndex((m) => order.indexOf(m.descriptor.name) > rank);
      if (at < 0) at = metrics.length;
      metrics.splice(at, 0, emptyHistogram(histogram, metrics[0]?.dataPoints[0]?.startTime ?? [0, 0]));
    }
    return {
      ...resourceMetrics,
      scopeMetrics: resourceMetrics.scopeMetrics.map((s) => (s === scope ? { ...scope, metrics } : s)),
    };
  };
  return { meter, fill };
}

function emptyHistogram(histogram: DeclaredHistogram, time: [number, number]): HistogramMetricData {
  return {
    descriptor: { name: histogram.name, description: histogram.description, unit: '', valueType: ValueType.DOUBLE },
    aggregationTemporality: AggregationTemporality.CUMULATIVE,
    dataPointType: DataPointType.HISTOGRAM,
    dataPoints: [
      {
        attributes: {},
        startTime: time,
        endTime: time,
        value: {
          buckets: {
            boundaries: histogram.boundaries,
            counts: new Array<number>(histogram.boundaries.length + 1).fill(0),
          },
          count: 0,
          sum: 0,
        },
      },
    ],
  };
}
