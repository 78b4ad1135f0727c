// Per-key token bucket for upgrade attempts (docs/protocol.md, "What counts against the rate limit"). One bucket per
// client key (rate-limit-key.ts: an IPv4 address or an IPv6 /64), shared by /v1/server and /v1/client. Integer refill
// with the fractional remainder carried over, and an idle sweep that only forgets buckets that would have refilled to
// full anyway, so a hammered bucket is never evicted into a fresh burst.
//
// The table is bounded (maxBuckets). The Map is kept in least-recently-used order; when it is full a new key may take
// the least recently used bucket's place only if that bucket is idle long enough to be full again (forgetting it
// changes nothing). Otherwise the new key is refused: evicting a bucket in use would hand its owner a fresh burst, and
// many addresses at once is exactly when the limit matters.

/** How often idle buckets are swept. */
export const RATE_LIMIT_SWEEP_INTERVAL_MS = 5 * 60_000;
/** Most buckets held at once (about 100 bytes each: ~10 MB at the bound). */
export const RATE_LIMIT_MAX_BUCKETS = 100_000;

/** allow: a token was taken; deny: the key's bucket is empty; table_full: the key has no bucket
 * and the table is full of buckets in use. */
export type RateDecision = 'allow' | 'deny' | 'table_full';

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
  /** Bound of the bucket table (RATE_LIMIT_MAX_BUCKETS by default). */
  maxBuckets?: number;
  now?: () => number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly burst: number;
  private readonly refillIntervalMs: number;
  private readonly maxBuckets: number;
  private readonly now: () => number;
  private sweeper: ReturnType<typeof setInterval> | undefined;
  /** The key last placed at the most recently used end. While it has a bucket, that bucket is the
   * newest entry, so a burst from one address (a proxy without --trust-x-forwarded-for, a NAT)
   * skips the delete-and-reinsert that would leave the order as it is. */
  private newestKey: string | undefined;

  constructor(options: RateLimiterOptions) {
    this.burst = options.burst;
    this.refillIntervalMs = options.refillIntervalMs;
    this.maxBuckets = options.maxBuckets ?? RATE_LIMIT_MAX_BUCKETS;
    this.now = options.now ?? Date.now;
  }

  /** Takes one token for `key`; false means deny (an empty bucket or a full table). */
  allow(key: string): boolean {
    return this.take(key) === 'allow';
  }

  /** Takes one token for `key`, saying why not when it cannot. */
  take(key: string): RateDecision {
    const now = this.now();
    const bucket = this.buckets.get(key);
    if (bucket === undefined) {
      if (this.buckets.size >= this.maxBuckets && !this.evictIdle(now)) return 'table_full';
      // The first request creates a bucket holding burst-1 tokens and is allowed.
      this.buckets.set(key, { tokens: this.burst - 1, refillAnchorMs: now, lastPollMs: now });
      this.newestKey = key;
      return 'allow';
    }
    // Move to the most recently used end (where it already is when it was the last key).
    if (key !== this.newestKey) {
      this.buckets.delete(key);
      this.buckets.set(key, bucket);
      this.newestKey = key;
    }
    bucket.lastPollMs = now;
    const intervals = Math.floor((now - bucket.refillAnchorMs) / this.refillIntervalMs);
    if (intervals > 0) {
      bucket.tokens = Math.min(this.burst, bucket.tokens + intervals);
      bucket.refillAnchorMs += intervals * this.refillIntervalMs;
    }
    if (bucket.tokens <= 0) return 'deny';
    bucket.tokens--;
    return 'allow';
  }

  /** Forgets the least recently used bucket if it would be full again; false if it is in use. */
  private evictIdle(now: number): boolean {
    for (const [key, bucket] of this.buckets) {
      if (now - bucket.lastPollMs < this.burst * this.refillIntervalMs) return false;
      this.buckets.delete(key);
      return true;
    }
    return false;
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
