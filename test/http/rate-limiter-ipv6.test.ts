// The per-IP rate limit's key and table bound (docs/operations.md, "Rate-limit sizing"): IPv6 clients
// are keyed by their /64 (one subscriber owns a whole /64), IPv4-mapped IPv6 addresses by their
// IPv4 address, and the bucket table holds at most maxBuckets keys: when full, the least recently
// used bucket is reused only if it is idle long enough to be full again, otherwise the new address
// is refused with 429 and counted in pyrycode_relay_rate_limit_table_full_total.

import { afterEach, describe, expect, it } from 'vitest';
import { RateLimiter } from '../../src/http/rate-limiter.js';
import { rateLimitKey } from '../../src/http/rate-limit-key.js';
import { binaryHeaders, httpGet, startRelay, type TestRelay } from '../helpers/relay.js';

let relay: TestRelay | undefined;
afterEach(async () => {
  await relay?.close();
  relay = undefined;
});

describe('rateLimitKey', () => {
  it('IPv4 as it is; IPv6 by /64 in one canonical spelling; IPv4-mapped IPv6 as its IPv4', () => {
    expect(rateLimitKey('10.0.0.1')).toBe('10.0.0.1');
    expect(rateLimitKey('2001:db8:1:2::1')).toBe('2001:db8:1:2::/64');
    expect(rateLimitKey('2001:0DB8:0001:0002:ffff:ffff:ffff:ffff')).toBe('2001:db8:1:2::/64');
    expect(rateLimitKey('2001:db8:1:3::1')).toBe('2001:db8:1:3::/64');
    expect(rateLimitKey('::1')).toBe('0:0:0:0::/64');
    expect(rateLimitKey('::')).toBe('0:0:0:0::/64');
    expect(rateLimitKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(rateLimitKey('::ffff:10.0.0.1')).toBe('10.0.0.1');
    expect(rateLimitKey('::FFFF:0a00:0001')).toBe('10.0.0.1');
    expect(rateLimitKey('64:ff9b::10.0.0.1')).toBe('64:ff9b:0:0::/64');
    // Not an IP (a proxy's X-Forwarded-For can hold anything): the string itself.
    expect(rateLimitKey('unknown')).toBe('unknown');
    expect(rateLimitKey('10.0.0.1:443')).toBe('10.0.0.1:443');
  });
});

describe('RateLimiter table bound', () => {
  it('when full, reuses the least recently used bucket only once it is idle for burst x interval; refuses otherwise', () => {
    let now = 0;
    const limiter = new RateLimiter({ burst: 2, refillIntervalMs: 1_000, maxBuckets: 3, now: () => now });
    expect(limiter.take('a')).toBe('allow');
    expect(limiter.take('b')).toBe('allow');
    expect(limiter.take('c')).toBe('allow');
    expect(limiter.size).toBe(3);
    // Full, every bucket recently used: a new key is refused, old keys keep their buckets.
    expect(limiter.take('d')).toBe('table_full');
    expect(limiter.take('a')).toBe('allow');
    expect(limiter.take('a')).toBe('deny');
    expect(limiter.size).toBe(3);
    // b and c idle for 2 s (= burst x interval, they would be full again); a polled at 1.5 s.
    now = 1_500;
    expect(limiter.take('a')).toBe('allow');
    now = 2_000;
    expect(limiter.take('d')).toBe('allow'); // took b's place (least recently used, idle)
    expect(limiter.take('e')).toBe('allow'); // took c's place
    expect(limiter.take('f')).toBe('table_full'); // a (polled 0.5 s ago) and d, e are in use
    expect(limiter.size).toBe(3);
    // A key in use is never evicted into a fresh burst: 'a' kept its bucket (one token refilled
    // since 1 s, not a new burst of 2).
    expect(limiter.take('a')).toBe('allow');
    expect(limiter.take('a')).toBe('deny');
  });
});

describe('rate limiting e2e (--trust-x-forwarded-for presents the addresses)', () => {
  const attempt = async (r: TestRelay, xff: string): Promise<number> =>
    (await httpGet(`${r.httpUrl}/v1/server`, { headers: binaryHeaders('rl', { 'X-Forwarded-For': xff }) })).status;
  const RL = 'pyrycode_relay_ws_upgrade_attempts_total{endpoint="server",outcome="reject_rate_limit"}';

  it('addresses of one IPv6 /64 share one bucket; another /64 has its own; IPv4-mapped shares with IPv4', async () => {
    const r = await startRelay({ trustXForwardedFor: true, rateLimitBurst: 2, rateLimitIntervalMs: 60_000 });
    relay = r;
    // 426: passed the limiter and the header gate (a plain GET is not a WebSocket handshake).
    expect(await attempt(r, '2001:db8:1:2::1')).toBe(426);
    expect(await attempt(r, '2001:db8:1:2::2')).toBe(426);
    expect(await attempt(r, '2001:db8:1:2:aaaa:bbbb:cccc:dddd')).toBe(429);
    expect(await attempt(r, '2001:db8:1:3::1')).toBe(426);
    expect(await attempt(r, '10.0.0.1')).toBe(426);
    expect(await attempt(r, '::ffff:10.0.0.1')).toBe(426);
    expect(await attempt(r, '::ffff:a00:1')).toBe(429);
    expect(await r.metric(RL)).toBe(2);
    expect(r.relay.limiter.size).toBe(3);
  });

  it('a full table refuses new addresses with 429, counted in rate_limit_table_full_total; known ones keep their buckets', async () => {
    const r = await startRelay({
      trustXForwardedFor: true,
      rateLimitBurst: 2,
      rateLimitIntervalMs: 60_000,
      rateLimitMaxBuckets: 3,
    });
    relay = r;
    expect(await r.metric('pyrycode_relay_rate_limit_table_full_total')).toBe(0);
    for (const ip of ['127.0.0.1', '127.0.0.2', '127.0.0.3']) expect(await attempt(r, ip)).toBe(426);
    expect(await attempt(r, '127.0.0.4')).toBe(429);
    expect(await attempt(r, '2001:db8::1')).toBe(429);
    expect(await attempt(r, '127.0.0.1')).toBe(426);
    expect(await attempt(r, '127.0.0.1')).toBe(429);
    expect(await r.metric('pyrycode_relay_rate_limit_table_full_total')).toBe(2);
    expect(await r.metric(RL)).toBe(3);
    expect(await r.metric('pyrycode_relay_register_failures_total{kind="ratelimit"}')).toBe(3);
    expect(r.relay.limiter.size).toBe(3);
  });
});
