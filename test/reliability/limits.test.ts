// Reliability: the per-IP rate limit and the global connection cap under bursts of parallel
// upgrades from many loopback addresses (issue #5). Linux routes all of 127/8 to lo, so each
// 127.0.0.x is a separate client IP with its own token bucket. The cap is instrumented on the
// instance (every tryAcquire/release is checked synchronously) and sampled on every event-loop
// turn, so "never exceeded, not even momentarily" is observed, not inferred.

import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import {
  familyDiff,
  figure,
  isEmpty,
  registerCell,
  rejectionCell,
  relayState,
  sampleDiff,
  Sampler,
  snapshot,
  splitDiff,
  upgradeCell,
  UPGRADE_REJECTIONS,
} from '../helpers/reliability.js';
import { binaryHeaders, phoneHeaders, startRelay, type TestRelay } from '../helpers/relay.js';
import { waitFor, withTimeout } from '../helpers/wait.js';
import { LOG_FIRST_LINES_PER_KEY } from '../../src/log-throttle.js';

const SUPPRESSED_CAP = 'pyrycode_relay_log_lines_suppressed_total{event="conn_cap_reached"}';

let relay: TestRelay | undefined;
const open: WebSocket[] = [];
afterEach(async () => {
  for (const ws of open.splice(0)) ws.terminate();
  await relay?.close();
  relay = undefined;
});

interface Attempt {
  addr: string;
  /** X-Pyrycode-Server of the request. */
  id: string;
  status: number; // 101 or the HTTP status
  ws?: WebSocket;
  closeCode?: number;
}

/** One upgrade from `addr`; a 101 keeps the socket open (it holds its slot). */
function attempt(r: TestRelay, addr: string, path: string, headers: Record<string, string>): Promise<Attempt> {
  return withTimeout(
    new Promise<Attempt>((resolve) => {
      const ws = new WebSocket(`${r.wsUrl}${path}`, { headers, perMessageDeflate: false, localAddress: addr });
      ws.on('error', () => {});
      ws.once('unexpected-response', (_req, res) => {
        res.resume();
        resolve({ addr, id: headers['X-Pyrycode-Server']!, status: res.statusCode ?? 0 });
        ws.terminate();
      });
      ws.once('open', () => {
        open.push(ws);
        const a: Attempt = { addr, id: headers['X-Pyrycode-Server']!, status: 101, ws };
        ws.once('close', (code: number) => (a.closeCode = code));
        resolve(a);
      });
    }),
    15_000,
    `upgrade from ${addr}`,
  );
}

/** Wraps the relay's ConnCap instance so every acquire and release is checked on the spot. */
function instrumentCap(r: TestRelay): { maxUsed: () => number; acquires: () => number; refused: () => number } {
  const cap = r.relay.cap;
  const acquire = cap.tryAcquire.bind(cap);
  const release = cap.release.bind(cap);
  let maxUsed = cap.used;
  let acquires = 0;
  let refused = 0;
  cap.tryAcquire = (): boolean => {
    const ok = acquire();
    if (ok) acquires++;
    else refused++;
    maxUsed = Math.max(maxUsed, cap.used);
    return ok;
  };
  cap.release = (): void => {
    release();
    maxUsed = Math.max(maxUsed, cap.used);
  };
  return { maxUsed: () => maxUsed, acquires: () => acquires, refused: () => refused };
}

function count(results: Attempt[], status: number, addr?: string): number {
  return results.filter((a) => a.status === status && (addr === undefined || a.addr === addr)).length;
}

describe('rate limit and connection cap under parallel bursts from 10 loopback addresses', () => {
  it('cap 20, burst 15 per IP: 200 parallel upgrades (20 from each of 127.0.0.11-20) -> exactly 20 x 101, 130 x 503, 50 x 429 (5 per IP); the cap is never exceeded', async () => {
    const r = await startRelay({ maxConnections: 20, rateLimitBurst: 15, rateLimitIntervalMs: 600_000 });
    relay = r;
    const cap = instrumentCap(r);
    const before = await snapshot(r);
    const sampler = new Sampler(() => ({
      capUsed: r.relay.cap.used,
      live: r.relay.liveConnections,
      binaries: r.relay.counts().binaries,
    }));
    const addrs = Array.from({ length: 10 }, (_, i) => `127.0.0.${11 + i}`);
    const t0 = Date.now();
    const jobs: Promise<Attempt>[] = [];
    for (let k = 0; k < 20; k++) {
      for (const addr of addrs) jobs.push(attempt(r, addr, '/v1/server', binaryHeaders(`lim-${addr}-${k}`)));
    }
    const results = await Promise.all(jobs);
    const burstMs = Date.now() - t0;
    // Every admitted binary claims its own server-id.
    await waitFor(() => r.relay.counts().binaries === 20, 5_000, '20 claims');
    const max = await sampler.stop();

    figure('limits burst 1: answers', {
      '101': count(results, 101),
      '503': count(results, 503),
      '429': count(results, 429),
      ms: burstMs,
    });
    figure(
      'limits burst 1: max cap used (instrumented / sampled)',
      `${cap.maxUsed()} / ${max.capUsed} (cap 20, ${sampler.samples} turns sampled)`,
    );
    expect(count(results, 101)).toBe(20);
    expect(count(results, 503)).toBe(130);
    expect(count(results, 429)).toBe(50);
    for (const addr of addrs) expect(count(results, 429, addr), `429s from ${addr}`).toBe(5);
    expect(results.every((a) => [101, 429, 503].includes(a.status))).toBe(true);
    expect(cap.maxUsed()).toBeLessThanOrEqual(20);
    expect(max.capUsed).toBeLessThanOrEqual(20);
    expect(max.live).toBeLessThanOrEqual(20);
    expect(max.binaries).toBeLessThanOrEqual(20);
    // Rate-limited requests never reached the cap: 150 acquire attempts, 20 granted, 130 refused.
    expect(cap.acquires()).toBe(20);
    expect(cap.refused()).toBe(130);

    const diff = sampleDiff(before, await snapshot(r));
    expect(splitDiff(diff).reference).toEqual({
      [upgradeCell('server', 'accept')]: 20,
      [upgradeCell('server', 'reject_rate_limit')]: 50,
      [registerCell('ratelimit')]: 50,
      pyrycode_relay_connected_binaries: 20,
    });
    // 503s are not in the reference families (docs/metrics.md, "Refusals the reference does not count"), only in the
    // operator signal.
    expect(familyDiff(diff, UPGRADE_REJECTIONS)).toEqual({ [rejectionCell('server', 'conn_cap_503')]: 130 });
    expect(r.logs.filter((l) => l.msg === 'rate_limited')).toHaveLength(50);
    // Every 503 is logged or, past the first LOG_FIRST_LINES_PER_KEY per address, counted as
    // suppressed (docs/operations.md "Log volume").
    const capLines = r.logs.filter((l) => l.msg === 'conn_cap_reached');
    expect(capLines.length + (await r.metric(SUPPRESSED_CAP))).toBe(130);
    for (const a of addrs) {
      expect(capLines.filter((l) => l.remote === a).length).toBeLessThanOrEqual(LOG_FIRST_LINES_PER_KEY);
    }
    expect(new Set(r.logs.filter((l) => l.msg === 'rate_limited').map((l) => l.remote))).toEqual(
      new Set(addrs.map((a) => JSON.stringify(a))),
    );
    expect(
      r.logs
        .filter((l) => l.msg === 'conn_cap_reached')
        .every((l) => l.path === '/v1/server' && addrs.includes(String(l.remote))),
    ).toBe(true);

    // ---- Burst 2: half the binaries leave; phones from 10 fresh addresses compete for the 10
    // freed slots while the exhausted addresses keep trying (429, never a slot).
    const held = results.filter((a) => a.status === 101);
    const leaving = held.slice(0, 10);
    const staying = held.slice(10);
    for (const a of leaving) a.ws!.close(1000);
    await waitFor(() => r.relay.cap.used === 10 && r.relay.liveConnections === 10, 5_000, 'slots freed');
    const serverIds = staying.map((a) => a.id);
    expect(serverIds.every((id) => r.relay.registry.binaryFor(id) !== undefined)).toBe(true);

    const before2 = await snapshot(r);
    const sampler2 = new Sampler(() => ({ capUsed: r.relay.cap.used, live: r.relay.liveConnections }));
    const fresh = Array.from({ length: 10 }, (_, i) => `127.0.0.${21 + i}`);
    const jobs2: Promise<Attempt>[] = [];
    for (let k = 0; k < 10; k++) {
      for (const addr of fresh) jobs2.push(attempt(r, addr, '/v1/client', phoneHeaders(serverIds[k]!)));
      for (const addr of addrs.slice(0, 3)) jobs2.push(attempt(r, addr, '/v1/client', phoneHeaders(serverIds[k]!)));
    }
    const results2 = await Promise.all(jobs2);
    await waitFor(() => r.relay.counts().phones === 10, 5_000, '10 phones registered');
    const max2 = await sampler2.stop();
    figure('limits burst 2: answers', {
      '101': count(results2, 101),
      '503': count(results2, 503),
      '429': count(results2, 429),
    });
    expect(count(results2, 101)).toBe(10);
    expect(count(results2, 503)).toBe(90);
    expect(count(results2, 429)).toBe(30);
    for (const addr of addrs.slice(0, 3)) expect(count(results2, 429, addr)).toBe(10);
    for (const addr of fresh) expect(count(results2, 429, addr)).toBe(0);
    expect(max2.capUsed).toBeLessThanOrEqual(20);
    expect(max2.live).toBeLessThanOrEqual(20);
    expect(cap.maxUsed()).toBeLessThanOrEqual(20);
    const diff2 = sampleDiff(before2, await snapshot(r));
    expect(splitDiff(diff2).reference).toEqual({
      [upgradeCell('client', 'accept')]: 10,
      [upgradeCell('client', 'reject_rate_limit')]: 30,
      [registerCell('ratelimit')]: 30,
      pyrycode_relay_connected_phones: 10,
    });
    expect(familyDiff(diff2, UPGRADE_REJECTIONS)).toEqual({ [rejectionCell('client', 'conn_cap_503')]: 90 });

    // Everybody leaves: every slot comes back, every gauge reads 0.
    for (const a of [...staying, ...results2.filter((x) => x.status === 101)]) a.ws!.close(1000);
    await waitFor(
      () =>
        r.relay.cap.used === 0 &&
        r.relay.liveConnections === 0 &&
        r.relay.counts().phones === 0 &&
        r.relay.counts().binaries === 0,
      5_000,
      'all gone',
    );
    // Grace windows (1 s here) run out; then nothing at all is left.
    await waitFor(() => isEmpty(relayState(r)), 5_000, 'registry empty');
    expect(r.relay.cap.used).toBe(0);
    expect(r.relay.liveConnections).toBe(0);
    expect(await r.metric('pyrycode_relay_connected_phones')).toBe(0);
    expect(await r.metric('pyrycode_relay_connected_binaries')).toBe(0);
    expect(cap.maxUsed()).toBeLessThanOrEqual(20);
  }, 60_000);

  it('burst equal to the cap from ONE address fills the cap (the documented residual), and a second address is still rate-limited separately', async () => {
    const r = await startRelay({ maxConnections: 20, rateLimitBurst: 20, rateLimitIntervalMs: 600_000 });
    relay = r;
    const cap = instrumentCap(r);
    const jobs: Promise<Attempt>[] = [];
    for (let k = 0; k < 30; k++) jobs.push(attempt(r, '127.0.0.41', '/v1/server', binaryHeaders(`one-ip-${k}`)));
    const results = await Promise.all(jobs);
    expect(count(results, 101)).toBe(20);
    expect(count(results, 429)).toBe(10);
    expect(count(results, 503)).toBe(0);
    // The cap is full: another address passes its own limiter and gets 503, never a 101.
    const other = await attempt(r, '127.0.0.42', '/v1/server', binaryHeaders('one-ip-other'));
    expect(other.status).toBe(503);
    expect(cap.maxUsed()).toBe(20);
    figure('limits: one IP with burst = cap holds', `${count(results, 101)} of 20 slots`);
  });
});
