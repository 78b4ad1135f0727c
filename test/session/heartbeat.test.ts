// Heartbeats share one timer per interval (src/session/heartbeat.ts): many peers cost one active
// timer, each peer is still pinged once per interval, a silent peer still times out, and the
// timer goes away with the last heartbeat.

import { afterEach, describe, expect, it } from 'vitest';
import { Heartbeat } from '../../src/session/heartbeat.js';
import type { Peer } from '../../src/session/peer.js';
import { waitFor } from '../helpers/wait.js';

/** A peer that records pings and answers them (or not). Only what Heartbeat reads. */
function fakePeer(answers: boolean): { peer: Peer; pings: number[] } {
  const pings: number[] = [];
  const state = { isClosing: false, isPaused: false, lastPong: 0 };
  const peer = {
    get isClosing() {
      return state.isClosing;
    },
    get isPaused() {
      return state.isPaused;
    },
    get lastPong() {
      return state.lastPong;
    },
    ping(): boolean {
      pings.push(performance.now());
      if (answers) state.lastPong = performance.now();
      return true;
    },
  } as unknown as Peer;
  return { peer, pings };
}

const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
const INTERVAL_MS = 160;
let started: Heartbeat[] = [];
afterEach(() => {
  for (const h of started) h.stop();
  started = [];
});

describe('heartbeat wheel', () => {
  it('200 heartbeats of one interval run on one timer, which goes away with the last', () => {
    const before = timers();
    for (let i = 0; i < 200; i++) {
      const h = new Heartbeat(fakePeer(true).peer, INTERVAL_MS, { heartbeatTimedOut: () => {} });
      h.start();
      started.push(h);
    }
    expect(timers() - before).toBe(1);
    for (const h of started) h.stop();
    expect(timers()).toBe(before);
  });

  it('pings each peer once per interval, the first one about one interval after start', async () => {
    const peers = Array.from({ length: 20 }, () => fakePeer(true));
    const t0 = performance.now();
    for (const { peer } of peers) {
      const h = new Heartbeat(peer, INTERVAL_MS, { heartbeatTimedOut: () => {} });
      h.start();
      started.push(h);
    }
    await waitFor(() => peers.every((p) => p.pings.length >= 3), 5_000, 'three pings each');
    for (const { pings } of peers) {
      // The first ping comes no earlier than 31/32 of an interval (timers never fire early).
      expect(pings[0]! - t0).toBeGreaterThanOrEqual((INTERVAL_MS * 31) / 32 - 2);
      // Later pings one interval apart (a late timer can only delay them).
      expect(pings[1]! - pings[0]!).toBeGreaterThanOrEqual(INTERVAL_MS - 2);
    }
  });

  it('a peer that never answers times out once, on the tick after its first ping', async () => {
    const { peer, pings } = fakePeer(false);
    let timeouts = 0;
    const h = new Heartbeat(peer, INTERVAL_MS, { heartbeatTimedOut: () => timeouts++ });
    started.push(h);
    h.start();
    await waitFor(() => timeouts === 1, 5_000, 'heartbeat timeout');
    expect(pings.length).toBe(1);
    await new Promise((r) => setTimeout(r, 2 * INTERVAL_MS));
    expect(timeouts).toBe(1);
  });
});
