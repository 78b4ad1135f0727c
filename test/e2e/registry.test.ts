// End-to-end registry semantics (docs/protocol.md, "What the binary sees when it claims a server-id";
// docs/decisions.md, "Registry"): conflict probe, takeover,
// grace window, reclaim, expiry, re-arm, phone cap and live gauges, with real ws clients.

import { afterEach, describe, expect, it } from 'vitest';
import {
  binaryHeaders,
  connectBinary,
  connectPhone,
  phoneConnId,
  phoneHeaders,
  sampleValue,
  startRelay,
  TestClient,
  type LogLine,
  type TestRelay,
} from '../helpers/relay.js';
import { sleep, waitFor } from '../helpers/wait.js';
import type { RelayOptions } from '../../src/relay.js';

// ---------------------------------------------------------------------------------------------
// Local helpers
// ---------------------------------------------------------------------------------------------

const relays: TestRelay[] = [];
const clients: TestClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.ws.terminate();
  for (const r of relays.splice(0)) await r.close();
});

async function boot(overrides: Partial<RelayOptions> = {}): Promise<TestRelay> {
  const r = await startRelay(overrides);
  relays.push(r);
  return r;
}

function track(c: TestClient): TestClient {
  clients.push(c);
  return c;
}

async function binary(r: TestRelay, id: string): Promise<TestClient> {
  return track(await connectBinary(r, id));
}

async function phone(r: TestRelay, id: string): Promise<TestClient> {
  const p = track(await connectPhone(r, id));
  expect(p.closed, `phone on ${id} registered`).toBeUndefined();
  return p;
}

function client(r: TestRelay, path: string, headers: Record<string, string>, options = {}): TestClient {
  return track(new TestClient(`${r.wsUrl}${path}`, headers, options));
}

/** A binary that never answers pings (the relay sees it as dead). */
async function deafBinary(r: TestRelay, id: string): Promise<TestClient> {
  const c = client(r, '/v1/server', binaryHeaders(id), { autoPong: false });
  await c.open();
  await waitFor(() => r.relay.registry.binaryFor(id) !== undefined, 3_000, `claim of ${id}`);
  return c;
}

type Endpoint = 'server' | 'client';
type Outcome = 'accept' | 'reject_headers' | 'reject_409' | 'reject_404' | 'reject_429' | 'reject_rate_limit';
type Kind = 'no_server' | 'server_in_use' | 'phones_at_cap' | 'ratelimit';

const UP = (endpoint: Endpoint, outcome: Outcome): string =>
  `pyrycode_relay_ws_upgrade_attempts_total{endpoint="${endpoint}",outcome="${outcome}"}`;
const RF = (kind: Kind): string => `pyrycode_relay_register_failures_total{kind="${kind}"}`;
const GRACE = 'pyrycode_relay_grace_expiries_total';
const BINARIES = 'pyrycode_relay_connected_binaries';
const PHONES = 'pyrycode_relay_connected_phones';

const COUNTER_SERIES: string[] = [
  ...(['server', 'client'] as Endpoint[]).flatMap((e) =>
    (['accept', 'reject_headers', 'reject_409', 'reject_404', 'reject_429', 'reject_rate_limit'] as Outcome[]).map(
      (o) => UP(e, o),
    ),
  ),
  ...(['no_server', 'server_in_use', 'phones_at_cap', 'ratelimit'] as Kind[]).map(RF),
  GRACE,
];

/** Every control-plane counter cell equals `expected` (others 0); polls up to 2 s, then asserts. */
async function expectCounters(r: TestRelay, expected: Record<string, number>): Promise<void> {
  const want: Record<string, number> = {};
  for (const s of COUNTER_SERIES) want[s] = 0;
  for (const [k, v] of Object.entries(expected)) {
    if (!(k in want)) throw new Error(`unknown series ${k}`);
    want[k] = v;
  }
  let last: Record<string, number> = {};
  try {
    await waitFor(
      async () => {
        const text = await r.scrape();
        last = {};
        for (const s of COUNTER_SERIES) last[s] = sampleValue(text, s);
        return COUNTER_SERIES.every((s) => last[s] === want[s]);
      },
      2_000,
      'counter cells',
    );
  } catch {
    // exact assertion below gives the diff
  }
  expect(last).toEqual(want);
}

async function gauges(r: TestRelay): Promise<{ binaries: number; phones: number }> {
  const text = await r.scrape();
  return { binaries: sampleValue(text, BINARIES), phones: sampleValue(text, PHONES) };
}

function logsOf(r: TestRelay, msg: string): LogLine[] {
  return r.logs.filter((l) => l.msg === msg);
}

function fields(line: LogLine): Record<string, unknown> {
  const { time: _t, level: _l, msg: _m, ...rest } = line;
  return rest;
}

async function waitGrace(r: TestRelay, id: string): Promise<void> {
  await waitFor(() => r.relay.registry.graceEntry(id) !== undefined, 3_000, `grace armed for ${id}`);
}

// ---------------------------------------------------------------------------------------------
// 3.3 conflict and takeover
// ---------------------------------------------------------------------------------------------

describe('first claim wins (3.3)', () => {
  it('conflict: a live incumbent answers the probe -> challenger 4409, incumbent unaffected', async () => {
    const r = await boot({ probeTimeoutMs: 300 });
    const a = await binary(r, 'cf');
    const pa = await phone(r, 'cf');
    const connId = await phoneConnId(pa, a);
    const incumbent = r.relay.registry.binaryFor('cf');

    const b = client(r, '/v1/server', binaryHeaders('cf', { 'X-Pyrycode-Version': '7.7.7-challenger' }));
    await b.open();
    expect(await b.waitClose()).toEqual({ code: 4409, reason: 'server-id already claimed' });
    expect(b.messages).toEqual([]);

    const conflict = logsOf(r, 'server_id_conflict');
    expect(conflict).toHaveLength(1);
    expect(conflict[0]!.level).toBe('INFO');
    expect(fields(conflict[0]!)).toEqual({ server_id: 'cf', remote: '127.0.0.1' });
    expect(r.logText()).not.toContain('7.7.7-challenger');
    expect(logsOf(r, 'server_id_takeover')).toEqual([]);
    expect(logsOf(r, 'server_claimed')).toHaveLength(1);

    // Incumbent keeps the slot and its phone, and still routes both ways.
    expect(a.closed).toBeUndefined();
    expect(pa.closed).toBeUndefined();
    expect(r.relay.registry.binaryFor('cf')).toBe(incumbent);
    a.send(JSON.stringify({ conn_id: connId, frame: { still: 'here' } }));
    expect(await pa.message(1)).toBe('{"still":"here"}');
    pa.send('{"n":2}');
    expect(JSON.parse(await a.message(2))).toEqual({ conn_id: connId, frame: { n: 2 } });
    await expectCounters(r, {
      [UP('server', 'accept')]: 1,
      [UP('client', 'accept')]: 1,
      [UP('server', 'reject_409')]: 1,
      [RF('server_in_use')]: 1,
    });
    expect(await gauges(r)).toEqual({ binaries: 1, phones: 1 });
  });

  it('takeover: unresponsive incumbent -> challenger accepted, incumbent 1011, its phones 4404', async () => {
    const r = await boot({ probeTimeoutMs: 300 });
    const a = await deafBinary(r, 'tk');
    const p1 = await phone(r, 'tk');
    const p2 = await phone(r, 'tk');

    const started = Date.now();
    const b = client(r, '/v1/server', binaryHeaders('tk', { 'X-Pyrycode-Version': '2.0.0' }));
    await b.open();
    expect(await a.waitClose()).toEqual({ code: 1011, reason: 'heartbeat timeout' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(280); // the probe waited probeTimeoutMs
    expect(await p1.waitClose()).toEqual({ code: 4404, reason: 'binary reclaimed server-id' });
    expect(await p2.waitClose()).toEqual({ code: 4404, reason: 'binary reclaimed server-id' });
    expect(b.closed).toBeUndefined();

    const seq = r.logs
      .filter((l) => l.msg === 'server_id_takeover' || l.msg === 'server_claimed')
      .map((l) => [l.msg, fields(l)]);
    expect(seq).toEqual([
      ['server_claimed', { server_id: 'tk', binary_version: '1.2.3', remote: '127.0.0.1' }],
      ['server_id_takeover', { server_id: 'tk', remote: '127.0.0.1' }],
      ['server_claimed', { server_id: 'tk', binary_version: '2.0.0', remote: '127.0.0.1' }],
    ]);

    // The displaced incumbent's release armed nothing (scoped release); b holds the slot.
    await waitFor(() => r.relay.liveConnections === 1, 3_000, 'old connections ended');
    expect(r.relay.registry.graceEntry('tk')).toBeUndefined();
    expect(await gauges(r)).toEqual({ binaries: 1, phones: 0 });
    // New phones reach the new binary, whose first message is that phone's frame.
    const p3 = await phone(r, 'tk');
    const connId = await phoneConnId(p3, b);
    expect(JSON.parse(b.messages[0]!)).toEqual({ conn_id: connId, frame: { probe: true } });
    await expectCounters(r, { [UP('server', 'accept')]: 2, [UP('client', 'accept')]: 3 });
  });
});

// ---------------------------------------------------------------------------------------------
// 3.4 grace window
// ---------------------------------------------------------------------------------------------

describe('grace window (3.4)', () => {
  it('binary leaves: binaries gauge drops at once, phones stay; registrations succeed; talkers 1000, silent wait', async () => {
    const r = await boot({ gracePeriodMs: 10_000 });
    const a = await binary(r, 'gr');
    const silent = await phone(r, 'gr');
    const talker = await phone(r, 'gr');
    expect(await gauges(r)).toEqual({ binaries: 1, phones: 2 });

    a.close();
    await waitGrace(r, 'gr');
    expect(await gauges(r)).toEqual({ binaries: 0, phones: 2 });
    const released = logsOf(r, 'server_released');
    expect(released).toHaveLength(1);
    expect(fields(released[0]!)).toEqual({ server_id: 'gr' });

    // The slot still counts as claimed: a new phone registers.
    const late = await phone(r, 'gr');
    expect(await gauges(r)).toEqual({ binaries: 0, phones: 3 });

    // A phone that talks to the dead binary is closed 1000 and unregistered.
    talker.send('{"hello":1}');
    expect(await talker.waitClose()).toEqual({ code: 1000, reason: '' });
    await waitFor(async () => (await gauges(r)).phones === 2, 3_000, 'talker unregistered');
    expect(r.relay.registry.counts()).toEqual({ binaries: 0, phones: 2 });

    // Silent phones just wait.
    await sleep(200);
    expect(silent.closed).toBeUndefined();
    expect(late.closed).toBeUndefined();
    expect(await gauges(r)).toEqual({ binaries: 0, phones: 2 });
    await expectCounters(r, { [UP('server', 'accept')]: 1, [UP('client', 'accept')]: 3 });
  });

  it('reclaim within grace: old phones 4404, new binary gets no close notice, no expiry counted', async () => {
    const grace = 500;
    const r = await boot({ gracePeriodMs: grace });
    const a = await binary(r, 'rc');
    const p1 = await phone(r, 'rc');
    const p2 = await phone(r, 'rc');
    a.close();
    await waitGrace(r, 'rc');
    const releasedAt = Date.now();
    // Registered during grace: evicted on reclaim like the others.
    const duringGrace = await phone(r, 'rc');

    const b = await binary(r, 'rc');
    expect(await p1.waitClose()).toEqual({ code: 4404, reason: 'binary reclaimed server-id' });
    expect(await p2.waitClose()).toEqual({ code: 4404, reason: 'binary reclaimed server-id' });
    expect(await duringGrace.waitClose()).toEqual({ code: 4404, reason: 'binary reclaimed server-id' });
    expect(r.relay.registry.graceEntry('rc')).toBeUndefined();
    expect(logsOf(r, 'server_id_takeover')).toEqual([]);
    expect(logsOf(r, 'server_id_conflict')).toEqual([]);

    // Counts dropped with the eviction.
    await waitFor(async () => (await gauges(r)).phones === 0, 3_000, 'phones gauge 0');
    expect(await gauges(r)).toEqual({ binaries: 1, phones: 0 });

    // Past the original window: nothing expired, b still holds the slot.
    const left = releasedAt + 2 * grace - Date.now();
    if (left > 0) await sleep(left);
    expect(b.closed).toBeUndefined();
    expect(b.messages).toEqual([]); // no close notice for the evicted phones
    expect(r.relay.registry.binaryFor('rc')).toBeDefined();

    // b's first message is the new phone's frame.
    const p3 = await phone(r, 'rc');
    const connId = await phoneConnId(p3, b);
    expect(b.messages).toHaveLength(1);
    expect(JSON.parse(b.messages[0]!)).toEqual({ conn_id: connId, frame: { probe: true } });
    await expectCounters(r, { [UP('server', 'accept')]: 2, [UP('client', 'accept')]: 4 });
  });

  it('expiry: phones closed 1000 with empty reason, grace_expiries_total 1, slot free', async () => {
    const grace = 300;
    const r = await boot({ gracePeriodMs: grace });
    const a = await binary(r, 'ex');
    const p1 = await phone(r, 'ex');
    const p2 = await phone(r, 'ex');
    const other = await binary(r, 'ex-other');
    const otherPhone = await phone(r, 'ex-other');
    a.close();
    await waitGrace(r, 'ex');
    const releasedAt = Date.now();
    expect(await p1.waitClose()).toEqual({ code: 1000, reason: '' });
    expect(await p2.waitClose()).toEqual({ code: 1000, reason: '' });
    expect(Date.now() - releasedAt).toBeGreaterThanOrEqual(grace / 2); // waited for the window
    await expectCounters(r, { [UP('server', 'accept')]: 2, [UP('client', 'accept')]: 3, [GRACE]: 1 });
    expect(r.relay.registry.binaryFor('ex')).toBeUndefined();
    await waitFor(async () => (await gauges(r)).phones === 1, 3_000, 'phones gauge after expiry');
    expect(await gauges(r)).toEqual({ binaries: 1, phones: 1 });
    // Other ids untouched.
    expect(other.closed).toBeUndefined();
    expect(otherPhone.closed).toBeUndefined();

    // The slot is free: a new phone gets 4404, a new binary claims fresh.
    const ghost = client(r, '/v1/client', phoneHeaders('ex'));
    expect(await ghost.waitClose()).toEqual({ code: 4404, reason: 'no server with that id' });
    const b = await binary(r, 'ex');
    expect(b.closed).toBeUndefined();
    await expectCounters(r, {
      [UP('server', 'accept')]: 3,
      [UP('client', 'accept')]: 3,
      [UP('client', 'reject_404')]: 1,
      [RF('no_server')]: 1,
      [GRACE]: 1,
    });
  });

  it('re-arm: A leaves, B reclaims, B leaves -> one expiry after the second window; the first timer counts nothing', async () => {
    const grace = 600;
    const r = await boot({ gracePeriodMs: grace });
    const a = await binary(r, 'ra');
    a.close();
    await waitGrace(r, 'ra');
    const firstEntry = r.relay.registry.graceEntry('ra')!;
    const firstArmedAt = Date.now();

    const b = await binary(r, 'ra');
    expect(r.relay.registry.graceEntry('ra')).toBeUndefined();
    const p = await phone(r, 'ra');
    await sleep(300);
    b.close();
    await waitGrace(r, 'ra');
    const secondEntry = r.relay.registry.graceEntry('ra')!;
    const secondArmedAt = Date.now();
    expect(secondEntry).not.toBe(firstEntry);

    // The first timer, had it fired, is stale: it touches nothing and counts nothing.
    expect(r.relay.registry.expire('ra', firstEntry)).toBe(false);
    expect(r.relay.registry.graceEntry('ra')).toBe(secondEntry);

    // Past the first window (plus margin) but before the second: nothing expired.
    const untilFirstPassed = firstArmedAt + grace + 100 - Date.now();
    if (untilFirstPassed > 0) await sleep(untilFirstPassed);
    if (Date.now() < secondArmedAt + grace - 20) {
      expect(p.closed).toBeUndefined();
      expect(r.relay.registry.binaryFor('ra')).toBeDefined();
      expect(await r.metric(GRACE)).toBe(0);
    }

    expect(await p.waitClose()).toEqual({ code: 1000, reason: '' });
    expect(Date.now() - secondArmedAt).toBeGreaterThanOrEqual(grace / 2);
    await expectCounters(r, { [UP('server', 'accept')]: 2, [UP('client', 'accept')]: 1, [GRACE]: 1 });
    // Well after both windows: still exactly one.
    await sleep(grace);
    expect(await r.metric(GRACE)).toBe(1);
    expect(r.relay.registry.binaryFor('ra')).toBeUndefined();
    expect(await gauges(r)).toEqual({ binaries: 0, phones: 0 });
  });
});

// ---------------------------------------------------------------------------------------------
// 3.5 phone registration
// ---------------------------------------------------------------------------------------------

describe('phone registration (3.5)', () => {
  it('cap 3 with 6 concurrent phones: exactly 3 accepted, 3 closed 4429', async () => {
    const r = await boot({ maxPhonesPerServer: 3 });
    await binary(r, 'pc');
    const phones = Array.from({ length: 6 }, () => client(r, '/v1/client', phoneHeaders('pc')));
    await Promise.all(phones.map((p) => p.open()));
    await waitFor(
      () => phones.filter((p) => p.closed !== undefined).length === 3 && r.relay.metrics.phonesSinceBoot === 3,
      3_000,
      '3 rejected and 3 registered',
    );
    await sleep(100); // nothing more happens to the accepted ones
    const rejected = phones.filter((p) => p.closed !== undefined);
    const accepted = phones.filter((p) => p.closed === undefined);
    expect(rejected).toHaveLength(3);
    expect(accepted).toHaveLength(3);
    for (const p of rejected) expect(p.closed).toEqual({ code: 4429, reason: 'too many phones for server-id' });
    expect(r.relay.registry.counts()).toEqual({ binaries: 1, phones: 3 });
    expect(await gauges(r)).toEqual({ binaries: 1, phones: 3 });
    await expectCounters(r, {
      [UP('server', 'accept')]: 1,
      [UP('client', 'accept')]: 3,
      [UP('client', 'reject_429')]: 3,
      [RF('phones_at_cap')]: 3,
    });
    const atCap = logsOf(r, 'phone_register_at_cap');
    expect(atCap).toHaveLength(3);
    for (const l of atCap) expect(fields(l)).toEqual({ server_id: 'pc', remote: '127.0.0.1' });
    // A slot frees when one leaves.
    accepted[0]!.close();
    await waitFor(() => r.relay.registry.counts().phones === 2, 3_000, 'phone unregistered');
    await phone(r, 'pc');
    expect(r.relay.registry.counts().phones).toBe(3);
  });

  it('unknown id: 4404 "no server with that id"', async () => {
    const r = await boot();
    await binary(r, 'known');
    const p = client(r, '/v1/client', phoneHeaders('unknown-id'));
    await p.open();
    expect(await p.waitClose()).toEqual({ code: 4404, reason: 'no server with that id' });
    expect(p.messages).toEqual([]);
    await expectCounters(r, { [UP('server', 'accept')]: 1, [UP('client', 'reject_404')]: 1, [RF('no_server')]: 1 });
    const l = logsOf(r, 'phone_register_no_server');
    expect(l).toHaveLength(1);
    expect(fields(l[0]!)).toEqual({ server_id: 'unknown-id', remote: '127.0.0.1' });
    expect(await gauges(r)).toEqual({ binaries: 1, phones: 0 });
  });
});

// ---------------------------------------------------------------------------------------------
// 3.7 / 8.3 gauges
// ---------------------------------------------------------------------------------------------

describe('gauges (3.7, 8.3)', () => {
  it('exact after a burst of concurrent connects and disconnects, 0 when everyone left', async () => {
    const r = await boot({ gracePeriodMs: 1_000 });
    const ids = ['g1', 'g2', 'g3', 'g4'];
    const bins = await Promise.all(ids.map((id) => binary(r, id)));
    const phonesById = new Map<string, TestClient[]>();
    await Promise.all(
      ids.map(async (id) => {
        const ps = await Promise.all(Array.from({ length: 4 }, () => phone(r, id)));
        phonesById.set(id, ps);
      }),
    );
    const expectGauges = async (want: { binaries: number; phones: number }, what: string): Promise<void> => {
      await waitFor(
        async () => {
          const g = await gauges(r);
          const c = r.relay.registry.counts();
          return (
            g.binaries === want.binaries &&
            g.phones === want.phones &&
            c.binaries === want.binaries &&
            c.phones === want.phones
          );
        },
        3_000,
        what,
      ).catch(() => undefined);
      expect(await gauges(r), what).toEqual(want);
      expect(r.relay.registry.counts(), what).toEqual(want);
    };
    await expectGauges({ binaries: 4, phones: 16 }, 'all connected');

    // Concurrent churn: half the phones leave, 4 new ones join, one binary leaves (its phones stay
    // while it graces), all at once.
    const leaving = ids.flatMap((id) => phonesById.get(id)!.slice(0, 2));
    for (const p of leaving) p.close();
    bins[3]!.close();
    const joiners = await Promise.all(['g1', 'g1', 'g2', 'g3'].map((id) => phone(r, id)));
    await expectGauges({ binaries: 3, phones: 12 }, 'after churn');

    // g4's grace expires: its 2 remaining phones are closed.
    await waitFor(() => r.relay.registry.binaryFor('g4') === undefined, 3_000, 'g4 expired');
    await expectGauges({ binaries: 3, phones: 10 }, 'after g4 expiry');
    expect(await r.metric(GRACE)).toBe(1);

    // Everyone leaves.
    for (const id of ids) for (const p of phonesById.get(id)!.slice(2)) p.close();
    for (const p of joiners) p.close();
    for (const b of bins.slice(0, 3)) b.close();
    await expectGauges({ binaries: 0, phones: 0 }, 'everyone left');
    await waitFor(() => r.relay.liveConnections === 0, 3_000, 'all handlers ended');
    // The three gracing binaries expire with no phones left.
    await waitFor(async () => (await r.metric(GRACE)) === 4, 3_000, 'all graces expired');
    await expectGauges({ binaries: 0, phones: 0 }, 'after expiries');
    await expectCounters(r, { [UP('server', 'accept')]: 4, [UP('client', 'accept')]: 20, [GRACE]: 4 });
  });
});
