// The rate limiter's bucket table stays in least-recently-used order when one key repeats (the
// repeat skips the reorder, src/http/rate-limiter.ts newestKey): a full table still gives up the
// least recently used idle bucket and refuses a new key while the others are in use
// (docs/protocol.md, "What counts against the rate limit").

import { describe, expect, it } from 'vitest';
import { RateLimiter } from '../../src/http/rate-limiter.js';

describe('rate limiter LRU order with a repeating key', () => {
  it('a key used again moves to the newest end; its repeats keep it there', () => {
    let now = 0;
    // A bucket is evictable after 3 x 1 s idle.
    const limiter = new RateLimiter({ burst: 3, refillIntervalMs: 1_000, maxBuckets: 2, now: () => now });
    expect(limiter.take('a')).toBe('allow');
    expect(limiter.take('b')).toBe('allow');
    expect(limiter.take('b')).toBe('allow'); // repeat of the newest
    now = 1_000;
    expect(limiter.take('a')).toBe('allow'); // a moves past b
    expect(limiter.take('a')).toBe('allow'); // repeat of the newest
    now = 3_000; // b idle 3 s (evictable), a idle 2 s (in use)
    expect(limiter.take('c')).toBe('allow'); // b, the least recently used, gave its place
    expect(limiter.size).toBe(2);
    // b has no bucket; the least recently used is now a, still in use: refused.
    expect(limiter.take('b')).toBe('table_full');
  });

  it('a key the sweep forgot starts a fresh bucket at the newest end', () => {
    let now = 0;
    // A bucket is evictable after 2 x 1 s idle.
    const limiter = new RateLimiter({ burst: 2, refillIntervalMs: 1_000, maxBuckets: 2, now: () => now });
    expect(limiter.take('a')).toBe('allow');
    now = 2_000;
    limiter.sweep(); // a idle long enough: forgotten
    expect(limiter.size).toBe(0);
    expect(limiter.take('b')).toBe('allow');
    expect(limiter.take('a')).toBe('allow'); // fresh bucket, after b
    now = 3_000;
    expect(limiter.take('a')).toBe('allow'); // repeat of the newest
    now = 4_000; // b idle 2 s (evictable), a idle 1 s (in use)
    expect(limiter.take('c')).toBe('allow');
    expect(limiter.take('b')).toBe('table_full');
  });
});
