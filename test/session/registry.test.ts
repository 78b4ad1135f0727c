// Unit tests of the pure Registry (docs/protocol.md, "What the binary sees when it claims a server-id") with plain
// objects and tiny grace periods. No sockets: the registry decides, the caller closes.

import { afterEach, describe, expect, it } from 'vitest';
import { Registry, type GraceEntry } from '../../src/session/registry.js';
import { sleep, waitFor } from '../helpers/wait.js';

interface Bin {
  name: string;
}
interface Phone {
  connId: string;
}

interface Expiry {
  serverId: string;
  phones: Phone[];
  at: number;
}

const registries: Registry<Bin, Phone>[] = [];

function makeRegistry(
  gracePeriodMs = 40,
  maxPhonesPerServer = 16,
): {
  reg: Registry<Bin, Phone>;
  expiries: Expiry[];
} {
  const expiries: Expiry[] = [];
  const reg = new Registry<Bin, Phone>({
    gracePeriodMs,
    maxPhonesPerServer,
    onGraceExpired: (serverId, phones) => expiries.push({ serverId, phones: [...phones], at: Date.now() }),
  });
  registries.push(reg);
  return { reg, expiries };
}

const bin = (name: string): Bin => ({ name });
const phone = (connId: string): Phone => ({ connId });

afterEach(() => {
  for (const reg of registries.splice(0)) reg.dispose();
});

/** Long grace for tests that must not see an expiry while they run. */
const LONG_GRACE = 60_000;

describe('claim', () => {
  it('fresh claim installs the binary', () => {
    const { reg } = makeRegistry(LONG_GRACE);
    const a = bin('a');
    expect(reg.claim('id1', a)).toEqual({ kind: 'claimed', reclaimed: false, evicted: [] });
    expect(reg.binaryFor('id1')).toBe(a);
    expect(reg.binaryFor('id2')).toBeUndefined();
    expect(reg.counts()).toEqual({ binaries: 1, phones: 0 });
    expect(reg.graceEntry('id1')).toBeUndefined();
  });

  it('a slot held by a connected binary asks for a probe and changes nothing', () => {
    const { reg } = makeRegistry(LONG_GRACE);
    const a = bin('a');
    const b = bin('b');
    reg.claim('id1', a);
    const p = phone('client-id1-00000001');
    expect(reg.registerPhone('id1', p)).toBe('ok');
    const decision = reg.claim('id1', b);
    expect(decision.kind).toBe('held');
    expect(decision.kind === 'held' && decision.incumbent).toBe(a);
    expect(reg.binaryFor('id1')).toBe(a);
    expect(reg.phoneFor('id1', p.connId)).toBe(p);
    expect(reg.counts()).toEqual({ binaries: 1, phones: 1 });
  });

  it('reclaim during grace evicts the phones, counts drop at once, other ids untouched, no expiry', async () => {
    const { reg, expiries } = makeRegistry(40);
    const a = bin('a');
    const b = bin('b');
    const c = bin('c');
    reg.claim('id1', a);
    reg.claim('id2', c);
    const p1 = phone('client-id1-00000001');
    const p2 = phone('client-id1-00000002');
    const q = phone('client-id2-00000001');
    expect(reg.registerPhone('id1', p1)).toBe('ok');
    expect(reg.registerPhone('id1', p2)).toBe('ok');
    expect(reg.registerPhone('id2', q)).toBe('ok');

    expect(reg.release('id1', a)).toBe(true);
    expect(reg.graceEntry('id1')).toBeDefined();
    // The gracing binary is not counted; its phones are.
    expect(reg.counts()).toEqual({ binaries: 1, phones: 3 });

    const decision = reg.claim('id1', b);
    expect(decision.kind).toBe('claimed');
    if (decision.kind !== 'claimed') throw new Error('unreachable');
    expect(decision.reclaimed).toBe(true);
    expect(new Set(decision.evicted)).toEqual(new Set([p1, p2]));
    expect(decision.evicted).toHaveLength(2);
    // Synchronously: phones gone, timer gone, new binary installed.
    expect(reg.counts()).toEqual({ binaries: 2, phones: 1 });
    expect(reg.binaryFor('id1')).toBe(b);
    expect(reg.phoneFor('id1', p1.connId)).toBeUndefined();
    expect(reg.phoneFor('id1', p2.connId)).toBeUndefined();
    expect(reg.graceEntry('id1')).toBeUndefined();
    // Other id untouched.
    expect(reg.binaryFor('id2')).toBe(c);
    expect(reg.phoneFor('id2', q.connId)).toBe(q);
    // Evicted phones' later unregister is a no-op.
    expect(reg.unregisterPhone('id1', p1)).toBe(false);
    expect(reg.counts()).toEqual({ binaries: 2, phones: 1 });
    // A new phone registers on the new binary.
    const p3 = phone('client-id1-00000003');
    expect(reg.registerPhone('id1', p3)).toBe('ok');
    expect(reg.counts()).toEqual({ binaries: 2, phones: 2 });

    // The cancelled timer never fires.
    await sleep(100);
    expect(expiries).toEqual([]);
    expect(reg.binaryFor('id1')).toBe(b);
    expect(reg.phoneFor('id1', p3.connId)).toBe(p3);
  });

  it('claim without grace leaves the phones of the held slot alone', () => {
    const { reg } = makeRegistry(LONG_GRACE);
    const a = bin('a');
    reg.claim('id1', a);
    const p = phone('client-id1-00000001');
    reg.registerPhone('id1', p);
    reg.claim('id1', bin('b'));
    expect(reg.phoneFor('id1', p.connId)).toBe(p);
    expect(reg.counts()).toEqual({ binaries: 1, phones: 1 });
  });
});

describe('takeover', () => {
  it('takes the slot from the dead incumbent, evicting its phones', () => {
    const { reg } = makeRegistry(LONG_GRACE);
    const a = bin('a');
    const b = bin('b');
    reg.claim('id1', a);
    const p1 = phone('client-id1-00000001');
    reg.registerPhone('id1', p1);
    const decision = reg.takeover('id1', b, a);
    expect(decision).toEqual({ kind: 'claimed', evicted: [p1], displaced: a });
    expect(reg.binaryFor('id1')).toBe(b);
    expect(reg.counts()).toEqual({ binaries: 1, phones: 0 });
    expect(reg.phoneFor('id1', p1.connId)).toBeUndefined();
  });

  it('conflict when someone else holds the slot by the time the probe ended', () => {
    const { reg } = makeRegistry(LONG_GRACE);
    const a = bin('a');
    const b = bin('b');
    const c = bin('c');
    reg.claim('id1', a);
    const p = phone('client-id1-00000001');
    reg.registerPhone('id1', p);
    // b took over first; c's probe of a also failed, but a no longer holds the slot.
    expect(reg.takeover('id1', b, a).kind).toBe('claimed');
    const p2 = phone('client-id1-00000002');
    reg.registerPhone('id1', p2);
    expect(reg.takeover('id1', c, a)).toEqual({ kind: 'conflict' });
    expect(reg.binaryFor('id1')).toBe(b);
    expect(reg.phoneFor('id1', p2.connId)).toBe(p2);
    expect(reg.counts()).toEqual({ binaries: 1, phones: 1 });
  });

  it('is a fresh claim if the slot emptied while probing', () => {
    const { reg, expiries } = makeRegistry(LONG_GRACE);
    const a = bin('a');
    const b = bin('b');
    reg.claim('id1', a);
    reg.release('id1', a);
    const entry = reg.graceEntry('id1')!;
    expect(reg.expire('id1', entry)).toBe(true);
    expect(expiries).toHaveLength(1);
    expect(reg.binaryFor('id1')).toBeUndefined();
    expect(reg.takeover('id1', b, a)).toEqual({ kind: 'claimed', evicted: [], displaced: undefined });
    expect(reg.binaryFor('id1')).toBe(b);
    expect(reg.counts()).toEqual({ binaries: 1, phones: 0 });
  });

  it('over an incumbent in grace cancels the timer (reclaim semantics)', async () => {
    const { reg, expiries } = makeRegistry(40);
    const a = bin('a');
    const b = bin('b');
    reg.claim('id1', a);
    const p = phone('client-id1-00000001');
    reg.registerPhone('id1', p);
    reg.release('id1', a);
    const startedAtMs = reg.graceEntry('id1')!.startedAtMs;
    expect(reg.parkedPhones()).toBe(1);
    expect(reg.takeover('id1', b, a)).toEqual({
      kind: 'claimed',
      evicted: [p],
      displaced: a,
      graceStartedAtMs: startedAtMs,
    });
    expect(reg.parkedPhones()).toBe(0);
    expect(reg.graceEntry('id1')).toBeUndefined();
    expect(reg.counts()).toEqual({ binaries: 1, phones: 0 });
    await sleep(100);
    expect(expiries).toEqual([]);
    expect(reg.binaryFor('id1')).toBe(b);
  });
});

describe('release and grace', () => {
  it('scoped release: a displaced binary arms nothing', async () => {
    const { reg, expiries } = makeRegistry(30);
    const a = bin('a');
    const b = bin('b');
    reg.claim('id1', a);
    reg.takeover('id1', b, a);
    const p = phone('client-id1-00000001');
    reg.registerPhone('id1', p);
    expect(reg.release('id1', a)).toBe(false);
    expect(reg.graceEntry('id1')).toBeUndefined();
    expect(reg.counts()).toEqual({ binaries: 1, phones: 1 });
    // Releasing an id the binary never held arms nothing either.
    expect(reg.release('other', a)).toBe(false);
    expect(reg.graceEntry('other')).toBeUndefined();
    await sleep(90);
    expect(expiries).toEqual([]);
    expect(reg.binaryFor('id1')).toBe(b);
    expect(reg.phoneFor('id1', p.connId)).toBe(p);
  });

  it('expiry removes the slot and its phones and reports them once', async () => {
    const { reg, expiries } = makeRegistry(30);
    const a = bin('a');
    reg.claim('id1', a);
    reg.claim('id2', bin('c'));
    const p1 = phone('client-id1-00000001');
    const p2 = phone('client-id1-00000002');
    reg.registerPhone('id1', p1);
    reg.registerPhone('id1', p2);
    reg.registerPhone('id2', phone('client-id2-00000001'));
    reg.release('id1', a);
    await waitFor(() => expiries.length === 1, 2_000, 'grace expiry');
    expect(expiries[0]!.serverId).toBe('id1');
    expect(new Set(expiries[0]!.phones)).toEqual(new Set([p1, p2]));
    expect(reg.binaryFor('id1')).toBeUndefined();
    expect(reg.graceEntry('id1')).toBeUndefined();
    expect(reg.phoneFor('id1', p1.connId)).toBeUndefined();
    expect(reg.counts()).toEqual({ binaries: 1, phones: 1 });
    expect(reg.registerPhone('id1', phone('client-id1-00000003'))).toBe('no_server');
    await sleep(60);
    expect(expiries).toHaveLength(1);
  });

  it('re-arm replaces the pending timer (last call wins, one expiry)', async () => {
    const { reg, expiries } = makeRegistry(300);
    const a = bin('a');
    reg.claim('id1', a);
    expect(reg.release('id1', a)).toBe(true);
    const first = reg.graceEntry('id1')!;
    await sleep(100);
    const rearmedAt = Date.now();
    expect(reg.release('id1', a)).toBe(true);
    const second = reg.graceEntry('id1')!;
    expect(second).not.toBe(first);
    await waitFor(() => expiries.length >= 1, 2_000, 'grace expiry');
    // Not the first timer's deadline: the second arm's.
    expect(expiries[0]!.at - rearmedAt).toBeGreaterThanOrEqual(290);
    await sleep(150);
    expect(expiries).toHaveLength(1);
    // The old entry, replayed, is stale.
    expect(reg.expire('id1', first)).toBe(false);
    expect(expiries).toHaveLength(1);
  });

  it('stale fire via expire(id, oldEntry) touches nothing and returns false', () => {
    const { reg, expiries } = makeRegistry(LONG_GRACE);
    const a = bin('a');
    const b = bin('b');
    reg.claim('id1', a);
    reg.registerPhone('id1', phone('client-id1-00000001'));
    reg.release('id1', a);
    const old: GraceEntry = reg.graceEntry('id1')!;
    reg.claim('id1', b); // reclaim: timer cancelled and entry deleted
    const p = phone('client-id1-00000002');
    reg.registerPhone('id1', p);
    expect(reg.expire('id1', old)).toBe(false);
    expect(expiries).toEqual([]);
    expect(reg.binaryFor('id1')).toBe(b);
    expect(reg.phoneFor('id1', p.connId)).toBe(p);
    expect(reg.counts()).toEqual({ binaries: 1, phones: 1 });

    // Also stale once b's own grace replaced it: a new entry is armed, the old one still no-op.
    reg.release('id1', b);
    const current = reg.graceEntry('id1')!;
    expect(current).not.toBe(old);
    expect(reg.expire('id1', old)).toBe(false);
    expect(reg.graceEntry('id1')).toBe(current);
    expect(reg.binaryFor('id1')).toBe(b);
    expect(reg.counts()).toEqual({ binaries: 0, phones: 1 });
    expect(expiries).toEqual([]);
    // A foreign entry object of the same shape is stale too (identity, not structure).
    expect(reg.expire('id1', { handle: current.handle, startedAtMs: current.startedAtMs })).toBe(false);
    expect(reg.graceEntry('id1')).toBe(current);
  });
});

describe('phones', () => {
  it('no binary -> no_server', () => {
    const { reg } = makeRegistry(LONG_GRACE);
    expect(reg.registerPhone('nobody', phone('client-nobody-00000001'))).toBe('no_server');
    expect(reg.counts()).toEqual({ binaries: 0, phones: 0 });
  });

  it('phone cap, including registering while in grace', () => {
    const { reg } = makeRegistry(LONG_GRACE, 3);
    const a = bin('a');
    reg.claim('id1', a);
    const p1 = phone('client-id1-00000001');
    expect(reg.registerPhone('id1', p1)).toBe('ok');
    expect(reg.registerPhone('id1', phone('client-id1-00000002'))).toBe('ok');
    reg.release('id1', a);
    // The slot still counts as claimed during grace: registrations succeed up to the cap.
    expect(reg.registerPhone('id1', phone('client-id1-00000003'))).toBe('ok');
    expect(reg.registerPhone('id1', phone('client-id1-00000004'))).toBe('at_cap');
    expect(reg.counts()).toEqual({ binaries: 0, phones: 3 });
    expect(reg.unregisterPhone('id1', p1)).toBe(true);
    expect(reg.registerPhone('id1', phone('client-id1-00000005'))).toBe('ok');
    expect(reg.registerPhone('id1', phone('client-id1-00000006'))).toBe('at_cap');
    // The cap is per server-id.
    reg.claim('id2', bin('c'));
    expect(reg.registerPhone('id2', phone('client-id2-00000001'))).toBe('ok');
    expect(reg.counts()).toEqual({ binaries: 1, phones: 4 });
  });

  it('counts exclude gracing binaries but include their phones', () => {
    const { reg } = makeRegistry(LONG_GRACE);
    const a = bin('a');
    const b = bin('b');
    reg.claim('id1', a);
    reg.claim('id2', b);
    reg.registerPhone('id1', phone('client-id1-00000001'));
    reg.registerPhone('id1', phone('client-id1-00000002'));
    reg.registerPhone('id2', phone('client-id2-00000001'));
    expect(reg.counts()).toEqual({ binaries: 2, phones: 3 });
    reg.release('id1', a);
    expect(reg.counts()).toEqual({ binaries: 1, phones: 3 });
    reg.release('id2', b);
    expect(reg.counts()).toEqual({ binaries: 0, phones: 3 });
    // Re-arm does not double-subtract.
    reg.release('id2', b);
    expect(reg.counts()).toEqual({ binaries: 0, phones: 3 });
    // Snapshot still includes the gracing binaries (shutdown closes them).
    expect(new Set(reg.snapshot().binaries)).toEqual(new Set([a, b]));
    expect(reg.snapshot().phones).toHaveLength(3);
  });

  it('unregister is swap-with-last and keeps every other phone findable', () => {
    const { reg } = makeRegistry(LONG_GRACE);
    reg.claim('id1', bin('a'));
    const ps = [1, 2, 3, 4, 5].map((n) => phone(`client-id1-0000000${n}`));
    for (const p of ps) expect(reg.registerPhone('id1', p)).toBe('ok');
    const order = [ps[1]!, ps[4]!, ps[0]!, ps[3]!, ps[2]!];
    const left = new Set(ps);
    for (const p of order) {
      expect(reg.unregisterPhone('id1', p)).toBe(true);
      left.delete(p);
      expect(reg.phoneFor('id1', p.connId)).toBeUndefined();
      for (const other of left) expect(reg.phoneFor('id1', other.connId)).toBe(other);
      expect(reg.counts().phones).toBe(left.size);
      // A second unregister of the same object is a no-op.
      expect(reg.unregisterPhone('id1', p)).toBe(false);
      expect(reg.counts().phones).toBe(left.size);
    }
    expect(reg.snapshot().phones).toEqual([]);
    expect(reg.unregisterPhone('nope', phone('x'))).toBe(false);
    // Identity, not connId: an equal-looking object is not the registered one.
    const p = phone('client-id1-00000009');
    reg.registerPhone('id1', p);
    expect(reg.unregisterPhone('id1', phone('client-id1-00000009'))).toBe(false);
    expect(reg.phoneFor('id1', p.connId)).toBe(p);
  });

  it('phoneFor matches only within the same server-id', () => {
    const { reg } = makeRegistry(LONG_GRACE);
    reg.claim('id1', bin('a'));
    reg.claim('id2', bin('b'));
    const p1 = phone('client-id1-aaaaaaaa');
    const p2 = phone('client-id2-bbbbbbbb');
    const same1 = phone('shared-conn-id');
    const same2 = phone('shared-conn-id');
    reg.registerPhone('id1', p1);
    reg.registerPhone('id2', p2);
    reg.registerPhone('id1', same1);
    reg.registerPhone('id2', same2);
    expect(reg.phoneFor('id1', p1.connId)).toBe(p1);
    expect(reg.phoneFor('id2', p1.connId)).toBeUndefined();
    expect(reg.phoneFor('id1', p2.connId)).toBeUndefined();
    expect(reg.phoneFor('id2', p2.connId)).toBe(p2);
    expect(reg.phoneFor('id1', 'shared-conn-id')).toBe(same1);
    expect(reg.phoneFor('id2', 'shared-conn-id')).toBe(same2);
    expect(reg.phoneFor('id3', p1.connId)).toBeUndefined();
  });
});
