// Process resources for leak and soak tests: active handles by type, the heap after a full GC,
// and a sampler that records the maximum of some probes on every event-loop turn (to catch
// momentary excursions a before/after comparison misses).

import v8 from 'node:v8';
import vm from 'node:vm';

export const MiB = 1024 * 1024;

/** process.getActiveResourcesInfo() as counts per type (ref'd timers, sockets, servers...). */
export function resourceCounts(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const type of process.getActiveResourcesInfo()) counts[type] = (counts[type] ?? 0) + 1;
  return counts;
}

let gcFn: (() => void) | undefined;
/** A full GC (vitest does not pass --expose-gc; the flag can still be set at run time). */
export function fullGc(): void {
  if (gcFn === undefined) {
    v8.setFlagsFromString('--expose-gc');
    gcFn = vm.runInNewContext('gc') as () => void;
  }
  gcFn();
  gcFn();
}

/** Heap in use after a full GC, in bytes. */
export function settledHeap(): number {
  fullGc();
  return process.memoryUsage().heapUsed;
}

/** Heap in use plus ArrayBuffer memory (Buffers live outside the heap) after a full GC, in bytes. */
export function settledHeapAndBuffers(): number {
  fullGc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/** The maximum of every probe value, sampled on every event-loop turn (setImmediate) until stop(). */
export class Sampler<K extends string> {
  readonly max: Record<K, number>;
  samples = 0;
  private running = true;
  private readonly done: Promise<void>;

  constructor(private readonly probe: () => Record<K, number>) {
    const first = probe();
    this.max = { ...first };
    this.done = new Promise((resolve) => {
      const tick = (): void => {
        if (!this.running) {
          resolve();
          return;
        }
        this.take();
        setImmediate(tick);
      };
      setImmediate(tick);
    });
  }

  private take(): void {
    const values = this.probe();
    this.samples++;
    for (const key of Object.keys(values) as K[]) {
      if (values[key] > this.max[key]) this.max[key] = values[key];
    }
  }

  async stop(): Promise<Record<K, number>> {
    this.running = false;
    await this.done;
    this.take();
    return this.max;
  }
}
