// Per-key token bucket for upgrade attempts (docs/protocol.md, "What counts against the rate limit"). One bucket per
// client IP, shared by /v1/server and /v1/client. Integer refill with the fractional remainder carried over, and an
// idle sweep that only forgets buckets that would have refilled to full anyway, so a hammered bucket is never evicted
// into a fresh burst.

/** How often idle buckets are swept. */
export const RATE_LIMIT_SWEEP_INTERVAL_MS = 5 * 60_000;

interface Bucket {
  tokens: number;
  /** Start of the current partial refill interval. */
  refillAnchorMs: number;
  /** Last call for this key, allowed or denied. */
  lastPollMs: number;
}

export interface RateLimiterOptions {
  burst: number;
  refillIntervalMs: number;
  now?: () => number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly burst: number;
  private readonly refillIntervalMs: number;
  private readonly now: () => number;
  private sweeper: ReturnType<typeof setInterval> | undefined;

  constructor(options: RateLimiterOptions) {
    this.burst = options.burst;
    this.refillIntervalMs = options.refillIntervalMs;
    this.now = options.now ?? Date.now;
  }

  /** Takes one token for `key`; false means deny. */
  allow(key: string): boolean {
    const now = this.now();
    const bucket = this.buckets.get(key);
    if (bucket === undefined) {
      // The first request creates a bucket holding burst-1 tokens and is allowed.
      this.buckets.set(key, { tokens: this.burst - 1, refillAnchorMs: now, lastPollMs: now });
      return true;
    }
    bucket.lastPollMs = now;
    const intervals = Math.floor((now - bucket.refillAnchorMs) / this.refillIntervalMs);
    if (intervals > 0) {
      bucket.tokens = Math.min(this.burst, bucket.tokens + intervals);
      bucket.refillAnchorMs += intervals * this.refillIntervalMs;
    }
    if (bucket.tokens <= 0) return false;
    bucket.tokens--;
    return true;
  }

  /** Forgets buckets idle for at least burst x interval (they would be full again). */
  sweep(): void {
    const idleMs = this.burst * this.refillIntervalMs;
    const now = this.now();
    for (const [key, bucket] of this.buckets) {
      if (now - bucket.lastPollMs >= idleMs) this.buckets.delete(key);
    }
  }

  get size(): number {
    return this.buckets.size;
  }

  startSweeper(intervalMs: number = RATE_LIMIT_SWEEP_INTERVAL_MS): void {
    if (this.sweeper !== undefined) return;
    this.sweeper = setInterval(() => this.sweep(), intervalMs);
    this.sweeper.unref();
  }

  stopSweeper(): void {
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }
}
