// Operator signals end to end (docs/metrics.md, "Operator signals"): why connections end, the
// received = forwarded + dropped ledger per direction, upgrade refusals, HTTP errors, grace
// reclaims, parked phones, build_info and ready. Real ws clients and raw TCP sockets over
// 127.0.0.1 against the real Relay and its Prometheus exporter.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { PhoneSession } from '../../src/session/phone-session.js';
import { httpGet, rawExchange, requestText, statusOf, upgradeStatus, WS_HANDSHAKE } from '../helpers/http.js';
import {
  binaryHeaders,
  connectBinary,
  connectPhone,
  phoneConnId,
  phoneHeaders,
  startRelay,
  TestClient,
  type TestRelay,
  useRelays,
} from '../helpers/relays.js';
import { clientFrame, RawWs, underlying } from '../helpers/ws-frames.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { CONNECTIONS_CLOSED, HTTP_ERRORS, samples, UPGRADE_REJECTIONS } from '../helpers/scrape.js';

const PKG_VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

/** The outbox stops handing frames to a socket with this much buffered (src/session/outbox.ts). */
const SOCKET_WINDOW = 64 * 1024;

const { boot, track } = useRelays();

// ---- Scrape parsing ----

/** Cells of a family keyed by its label values joined with '/', e.g. 'client/normal_1000'. */
function cells(text: string, name: string, keys: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samples(text, name)) out[keys.map((k) => s.labels[k]).join('/')] = s.value;
  return out;
}

function value(text: string, series: string, labels: Record<string, string> = {}): number {
  const found = samples(text, series).filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length !== 1)
    throw new Error(`expected one sample of ${series} ${JSON.stringify(labels)}, got ${found.length}`);
  return found[0]!.value;
}

function diff(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [key, v] of Object.entries(after)) {
    const d = v - (before[key] ?? 0);
    if (d !== 0) out[key] = d;
  }
  return out;
}

const total = (cellsByKey: Record<string, number>): number => Object.values(cellsByKey).reduce((a, b) => a + b, 0);

async function closedCells(r: TestRelay): Promise<Record<string, number>> {
  return cells(await r.scrape(), CONNECTIONS_CLOSED, ['endpoint', 'reason']);
}

/** Waits until as many closes as `expected` holds were counted since `before`, lets a moment pass,
 * then requires exactly these cells to have moved (so the sum over all reasons equals the number
 * of connections that ended). */
async function expectClosed(
  r: TestRelay,
  before: Record<string, number>,
  expected: Record<string, number>,
  timeoutMs = 5_000,
): Promise<void> {
  const want = total(expected);
  await waitFor(
    async () => total(diff(before, await closedCells(r))) >= want,
    timeoutMs,
    `${want} connection close(s) counted (${JSON.stringify(expected)})`,
  );
  await sleep(100);
  expect(diff(before, await closedCells(r))).toEqual(expected);
}

/** Expects every cell of a family at 0 except `moved`. */
function expectCells(actual: Record<string, number>, moved: Record<string, number>): void {
  for (const key of Object.keys(moved)) expect(Object.keys(actual), `cell ${key} exists`).toContain(key);
  const expected: Record<string, number> = {};
  for (const key of Object.keys(actual)) expected[key] = moved[key] ?? 0;
  expect(actual).toEqual(expected);
}

// ---- Sockets ----

/** A raw phone registered on `serverId` (a binary must hold it). */
async function rawPhone(r: TestRelay, serverId: string): Promise<RawWs> {
  const before = r.relay.metrics.phonesSinceBoot;
  const ws = track(await RawWs.open(r.port, '/v1/client', phoneHeaders(serverId)));
  await waitFor(() => r.relay.metrics.phonesSinceBoot > before, 3_000, 'raw phone registration');
  return ws;
}

async function rawBinary(r: TestRelay, serverId: string): Promise<RawWs> {
  const ws = track(await RawWs.open(r.port, '/v1/server', binaryHeaders(serverId)));
  await waitFor(() => r.relay.registry.binaryFor(serverId), 3_000, 'raw binary claim');
  return ws;
}

/** Floods a paused phone with 64 KiB frames until the relay gives up on it (backlog full). */
async function floodUntilBacklogFull(
  r: TestRelay,
  binary: TestClient,
  connId: string,
  send: (data: string) => void = (data) => binary.send(data),
): Promise<number> {
  const big = `{"conn_id":"${connId}","frame":"${'x'.repeat(64 * 1024)}"}`;
  const gaveUp = (): boolean =>
    r.logs.some(
      (l) =>
        l.msg === 'binary_forwarder_phone_enqueue_failed' && l.conn_id === connId && l.err === 'phone backlog full',
    );
  let sent = 0;
  while (!gaveUp()) {
    if (sent >= 1_000) throw new Error('the relay never gave up on the paused phone');
    for (let i = 0; i < 16; i++) {
      send(big);
      sent++;
    }
    await waitFor(() => binary.ws.bufferedAmount < 256 * 1024, 5_000, 'binary client drained');
    await sleep(5);
  }
  return sent;
}

// =============================================================================================
// 1. connections_closed_total
// =============================================================================================

describe('connections_closed_total: one increment per connection, in the cell of its reason', () => {
  const PEER_CLOSES: [string, (c: TestClient) => void, string][] = [
    ['1000', (c) => c.close(1000), 'normal_1000'],
    ['1001', (c) => c.close(1001), 'going_away_1001'],
    ['4000', (c) => c.close(4000), 'other_code'],
    ['a close frame without a status code', (c) => c.close(), 'no_status_1005'],
    ['no close frame (terminate)', (c) => c.ws.terminate(), 'abrupt'],
  ];
  for (const [what, act, reason] of PEER_CLOSES) {
    it(`the peer closes with ${what} -> ${reason} (phone, then binary)`, async () => {
      const r = await boot();
      const binary = await connectBinary(r, 'peer-close');
      const phone = await connectPhone(r, 'peer-close');
      let before = await closedCells(r);
      act(phone);
      await expectClosed(r, before, { [`client/${reason}`]: 1 });
      before = await closedCells(r);
      act(binary);
      await expectClosed(r, before, { [`server/${reason}`]: 1 });
    });
  }

  it('a message of 262145 bytes -> too_big_1009 (phone, then binary)', async () => {
    const r = await boot();
    const binary = await connectBinary(r, 'too-big');
    const phone = await connectPhone(r, 'too-big');
    let before = await closedCells(r);
    phone.send('x'.repeat(262_145));
    expect((await phone.waitClose()).code).toBe(1009);
    await expectClosed(r, before, { 'client/too_big_1009': 1 });
    before = await closedCells(r);
    binary.send('x'.repeat(262_145));
    expect((await binary.waitClose()).code).toBe(1009);
    await expectClosed(r, before, { 'server/too_big_1009': 1 });
  });

  it('invalid UTF-8 in a text frame -> invalid_payload_1007 (phone, then binary)', async () => {
    const r = await boot();
    await connectBinary(r, 'bad-utf8');
    const invalid = clientFrame(0x1, Buffer.from([0xc3, 0x28]));
    let before = await closedCells(r);
    const phone = await rawPhone(r, 'bad-utf8');
    phone.write(invalid);
    await waitFor(() => phone.closeFrame()?.code, 3_000, 'close frame to the phone');
    expect(phone.closeFrame()?.code).toBe(1007);
    await expectClosed(r, before, { 'client/invalid_payload_1007': 1 });
    before = await closedCells(r);
    const binary = await rawBinary(r, 'bad-utf8-b');
    binary.write(invalid);
    await waitFor(() => binary.closeFrame()?.code, 3_000, 'close frame to the binary');
    expect(binary.closeFrame()?.code).toBe(1007);
    await expectClosed(r, before, { 'server/invalid_payload_1007': 1 });
  });

  const PROTOCOL_ERRORS: [string, Buffer][] = [
    ['an unmasked client frame', Buffer.from([0x81, 0x02, 0x7b, 0x7d])],
    ['a reserved opcode (0x3)', clientFrame(0x3, Buffer.alloc(0))],
  ];
  for (const [what, frame] of PROTOCOL_ERRORS) {
    it(`${what} -> protocol_error_1002 (phone, then binary)`, async () => {
      const r = await boot();
      await connectBinary(r, 'proto');
      let before = await closedCells(r);
      const phone = await rawPhone(r, 'proto');
      phone.write(frame);
      await waitFor(() => phone.closeFrame()?.code, 3_000, 'close frame to the phone');
      expect(phone.closeFrame()?.code).toBe(1002);
      await expectClosed(r, before, { 'client/protocol_error_1002': 1 });
      before = await closedCells(r);
      const binary = await rawBinary(r, 'proto-b');
      binary.write(frame);
      await waitFor(() => binary.closeFrame()?.code, 3_000, 'close frame to the binary');
      expect(binary.closeFrame()?.code).toBe(1002);
      await expectClosed(r, before, { 'server/protocol_error_1002': 1 });
    });
  }

  it('a message that does not complete within the read deadline -> read_timeout_1008 (phone, then binary)', async () => {
    const r = await boot({ messageReadTimeoutMs: 300 });
    await connectBinary(r, 'read-dl');
    const partial = clientFrame(0x1, Buffer.from('{"a":"bbbb'), { announced: 100 });
    let before = await closedCells(r);
    const phone = await rawPhone(r, 'read-dl');
    phone.write(partial);
    await expectClosed(r, before, { 'client/read_timeout_1008': 1 });
    expect(phone.closeFrame()?.code).toBe(1008);
    before = await closedCells(r);
    const binary = await rawBinary(r, 'read-dl-b');
    binary.write(partial);
    await expectClosed(r, before, { 'server/read_timeout_1008': 1 });
    expect(binary.closeFrame()?.code).toBe(1008);
  });

  it('no pong within the heartbeat interval -> heartbeat_timeout (phone, then binary)', async () => {
    const r = await boot({ heartbeatIntervalMs: 200 });
    await connectBinary(r, 'hb');
    let before = await closedCells(r);
    const deafPhone = new TestClient(`${r.wsUrl}/v1/client`, phoneHeaders('hb'), { autoPong: false });
    expect(await deafPhone.waitClose(3_000)).toEqual({ code: 1011, reason: 'heartbeat timeout' });
    await expectClosed(r, before, { 'client/heartbeat_timeout': 1 });
    before = await closedCells(r);
    const deafBinary = new TestClient(`${r.wsUrl}/v1/server`, binaryHeaders('hb-b'), { autoPong: false });
    expect(await deafBinary.waitClose(3_000)).toEqual({ code: 1011, reason: 'heartbeat timeout' });
    await expectClosed(r, before, { 'server/heartbeat_timeout': 1 });
  });

  it('a drain closes both endpoints -> shutdown', async () => {
    const r = await boot();
    const binary = await connectBinary(r, 'sd');
    const phone = await connectPhone(r, 'sd');
    const before = await closedCells(r);
    expect(await r.relay.drain(3_000)).toBe(true);
    expect(await phone.waitClose()).toEqual({ code: 1001, reason: 'shutting down' });
    expect(await binary.waitClose()).toEqual({ code: 1001, reason: 'shutting down' });
    await expectClosed(r, before, { 'client/shutdown': 1, 'server/shutdown': 1 });
  });

  it('a claim on a slot held by a live binary -> conflict_4409', async () => {
    const r = await boot();
    const incumbent = await connectBinary(r, 'conflict');
    const before = await closedCells(r);
    const challenger = new TestClient(`${r.wsUrl}/v1/server`, binaryHeaders('conflict'));
    expect(await challenger.waitClose()).toEqual({ code: 4409, reason: 'server-id already claimed' });
    await expectClosed(r, before, { 'server/conflict_4409': 1 });
    expect(incumbent.closed).toBeUndefined();
  });

  it('an unresponsive incumbent loses its slot to a new claim -> taken_over; the challenger holds the slot', async () => {
    const r = await boot({ probeTimeoutMs: 300 });
    const incumbent = new TestClient(`${r.wsUrl}/v1/server`, binaryHeaders('takeover'), { autoPong: false });
    await incumbent.open();
    const incumbentSession = await waitFor(() => r.relay.registry.binaryFor('takeover'), 3_000, 'claim');
    const before = await closedCells(r);
    const challenger = new TestClient(`${r.wsUrl}/v1/server`, binaryHeaders('takeover'));
    await challenger.open();
    expect(await incumbent.waitClose(3_000)).toEqual({ code: 1011, reason: 'heartbeat timeout' });
    await expectClosed(r, before, { 'server/taken_over': 1 });
    const holder = r.relay.registry.binaryFor('takeover');
    expect(holder).toBeDefined();
    expect(holder).not.toBe(incumbentSession);
    expect(challenger.closed).toBeUndefined();
    const text = await r.scrape();
    expect(value(text, 'pyrycode_relay_ws_upgrade_attempts_total', { endpoint: 'server', outcome: 'accept' })).toBe(2);
    expect(value(text, 'pyrycode_relay_register_failures_total', { kind: 'server_in_use' })).toBe(0);
    // The incumbent was connected, not in its grace window: no reclaim.
    expect(value(text, 'pyrycode_relay_grace_reclaims_total')).toBe(0);
  });

  it('a drain during the liveness probe -> probe_aborted for the challenger, shutdown for the incumbent', async () => {
    const r = await boot({ probeTimeoutMs: 2_000 });
    const incumbent = new TestClient(`${r.wsUrl}/v1/server`, binaryHeaders('probing'), { autoPong: false });
    let pinged = 0;
    incumbent.ws.on('ping', () => pinged++);
    await incumbent.open();
    await waitFor(() => r.relay.registry.binaryFor('probing'), 3_000, 'claim');
    const before = await closedCells(r);
    const challenger = new TestClient(`${r.wsUrl}/v1/server`, binaryHeaders('probing'));
    await challenger.open();
    await waitFor(() => pinged > 0, 3_000, 'the probe ping to the incumbent');
    expect(await r.relay.drain(3_000)).toBe(true);
    expect(await challenger.waitClose()).toEqual({ code: 1000, reason: '' });
    expect(await incumbent.waitClose()).toEqual({ code: 1001, reason: 'shutting down' });
    await expectClosed(r, before, { 'server/probe_aborted': 1, 'server/shutdown': 1 });
  });

  it('a phone for a server-id nobody holds -> no_server_4404', async () => {
    const r = await boot();
    const before = await closedCells(r);
    const phone = new TestClient(`${r.wsUrl}/v1/client`, phoneHeaders('nobody'));
    expect(await phone.waitClose()).toEqual({ code: 4404, reason: 'no server with that id' });
    await expectClosed(r, before, { 'client/no_server_4404': 1 });
  });

  it('a phone over the per-server-id cap -> at_cap_4429', async () => {
    const r = await boot({ maxPhonesPerServer: 1 });
    await connectBinary(r, 'cap');
    const first = await connectPhone(r, 'cap');
    const before = await closedCells(r);
    const extra = new TestClient(`${r.wsUrl}/v1/client`, phoneHeaders('cap'));
    expect(await extra.waitClose()).toEqual({ code: 4429, reason: 'too many phones for server-id' });
    await expectClosed(r, before, { 'client/at_cap_4429': 1 });
    expect(first.closed).toBeUndefined();
  });

  it('a reclaim within the grace window evicts the phones -> evicted_4404', async () => {
    const r = await boot({ gracePeriodMs: 3_000 });
    const first = await connectBinary(r, 'evict');
    const phone = await connectPhone(r, 'evict');
    let before = await closedCells(r);
    first.close(1000);
    await expectClosed(r, before, { 'server/normal_1000': 1 });
    expect(r.relay.registry.graceEntry('evict')).toBeDefined();
    before = await closedCells(r);
    await connectBinary(r, 'evict');
    expect(await phone.waitClose()).toEqual({ code: 4404, reason: 'binary reclaimed server-id' });
    await expectClosed(r, before, { 'client/evicted_4404': 1 });
  });

  it('the grace window runs out -> grace_expired for its phones', async () => {
    const r = await boot({ gracePeriodMs: 300 });
    const binary = await connectBinary(r, 'expire');
    const phones = [await connectPhone(r, 'expire'), await connectPhone(r, 'expire')];
    const before = await closedCells(r);
    binary.close(1000);
    for (const phone of phones) expect(await phone.waitClose()).toEqual({ code: 1000, reason: '' });
    await expectClosed(r, before, { 'server/normal_1000': 1, 'client/grace_expired': 2 });
  });

  it('a phone whose outbox overflows -> backlog_full', async () => {
    const r = await boot({ heartbeatIntervalMs: 60_000 });
    const binary = await connectBinary(r, 'backlog');
    const phone = await connectPhone(r, 'backlog');
    const connId = await phoneConnId(phone, binary);
    const before = await closedCells(r);
    underlying(phone).pause();
    await floodUntilBacklogFull(r, binary, connId);
    await waitFor(() => binary.messages.includes(`{"conn_id":"${connId}","close_code":1011}`), 5_000, 'close notice');
    // The relay decided; its close frame is stuck behind the unread backlog. Drop the TCP
    // connection: the close still counts under the relay's reason.
    phone.ws.terminate();
    await expectClosed(r, before, { 'client/backlog_full': 1 });
  });

  it('a phone frame that is not JSON -> malformed_frame', async () => {
    const r = await boot();
    await connectBinary(r, 'malformed');
    const phone = await connectPhone(r, 'malformed');
    const before = await closedCells(r);
    phone.send('not json');
    expect(await phone.waitClose()).toEqual({ code: 1000, reason: '' });
    await expectClosed(r, before, { 'client/malformed_frame': 1 });
  });

  it('a phone frame while its binary is in the grace window -> forward_failed', async () => {
    // no_binary is not provoked here: a registered phone always has a binary entry for its
    // server-id (the entry leaves the registry only with its phones, on expiry or at the end of a
    // drain, after those phones were closed). A binary in grace is the closest path.
    const r = await boot({ gracePeriodMs: 3_000 });
    const binary = await connectBinary(r, 'fwd-fail');
    const phone = await connectPhone(r, 'fwd-fail');
    await phoneConnId(phone, binary);
    let before = await closedCells(r);
    binary.close(1000);
    await expectClosed(r, before, { 'server/normal_1000': 1 });
    before = await closedCells(r);
    phone.send('{"late":true}');
    expect(await phone.waitClose()).toEqual({ code: 1000, reason: '' });
    await expectClosed(r, before, { 'client/forward_failed': 1 });
  });

  it('a close directive from the binary -> directive', async () => {
    const r = await boot();
    const binary = await connectBinary(r, 'directive');
    const phone = await connectPhone(r, 'directive');
    const connId = await phoneConnId(phone, binary);
    const before = await closedCells(r);
    binary.send(`{"conn_id":"${connId}","close_code":4401}`);
    expect(await phone.waitClose()).toEqual({ code: 4401, reason: '' });
    await expectClosed(r, before, { 'client/directive': 1 });
    expect(binary.closed).toBeUndefined();
  });
});

// These two run concurrently, so each owns its relay (the shared afterEach would close it early).
describe.concurrent('slow timers (in parallel)', () => {
  it('sockets that stop draining for the 10 s send deadline -> write_failed (phone and binary)', async () => {
    // The send deadline (10 s) is not configurable; the heartbeat must not win the race.
    const r = await startRelay({ heartbeatIntervalMs: 60_000, gracePeriodMs: 30_000 });
    try {
      await writeFailed(r);
    } finally {
      await r.close();
    }
  }, 20_000);

  it('http_errors: a request whose headers never complete gets 408 after the 5 s header timeout', async () => {
    const r = await startRelay();
    try {
      const t0 = Date.now();
      const res = await rawExchange(r.port, 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ', 8_000);
      const elapsed = Date.now() - t0;
      expect(res).toMatch(/^HTTP\/1\.1 408 /);
      expect(elapsed).toBeGreaterThanOrEqual(4_900);
      expect(elapsed).toBeLessThan(7_000);
      expectCells(cells(await r.scrape(), HTTP_ERRORS, ['reason']), { header_timeout_408: 1 });
    } finally {
      await r.close();
    }
  }, 10_000);
});

async function writeFailed(r: TestRelay): Promise<void> {
  // Phone side: the binary keeps writing to a phone that stopped reading.
  const b1 = await connectBinary(r, 'wf-phone');
  const p1 = await connectPhone(r, 'wf-phone');
  const id1 = await phoneConnId(p1, b1);
  // Binary side: a phone keeps writing to a binary that stopped reading.
  const b2 = await connectBinary(r, 'wf-binary');
  const p2 = await connectPhone(r, 'wf-binary');
  await phoneConnId(p2, b2);
  const phoneSession = r.relay.registry.phoneFor('wf-phone', id1)!;
  const binarySession = r.relay.registry.binaryFor('wf-binary')!;
  const before = await closedCells(r);

  underlying(p1).pause();
  underlying(b2).pause();
  const toPhone = `{"conn_id":"${id1}","frame":"${'p'.repeat(60_000)}"}`;
  const toBinary = `{"blob":"${'b'.repeat(60_000)}"}`;
  // Fill the kernel buffers until a send is stuck in each relay socket, staying far below the
  // phone's 4 MiB outbox budget (a full outbox would be backlog_full instead).
  const stuck = (peer: { pendingSends: number }): boolean => peer.pendingSends > 0;
  for (let round = 0; ; round++) {
    if (round > 500) throw new Error('sends never got stuck');
    if (stuck(phoneSession.peer) && stuck(binarySession.peer)) {
      await sleep(100);
      if (stuck(phoneSession.peer) && stuck(binarySession.peer)) break;
    }
    if (!stuck(phoneSession.peer)) b1.send(toPhone);
    if (!stuck(binarySession.peer)) p2.send(toBinary);
    await sleep(20);
  }
  const stuckAt = Date.now();
  // Phone: the relay closes it 1011 "phone write failed" and tells the binary.
  await waitFor(
    () => b1.messages.includes(`{"conn_id":"${id1}","close_code":1011}`),
    13_000,
    'close notice for the stalled phone',
    50,
  );
  await waitFor(() => binarySession.peer.isClosed, 3_000, 'relay closing the stalled binary', 20);
  expect(Date.now() - stuckAt).toBeGreaterThanOrEqual(9_000);
  // Both close frames sit behind unread data; drop TCP so the sockets end now.
  p1.ws.terminate();
  b2.ws.terminate();
  // The phone whose envelope was stuck in the stalled binary's socket could not be forwarded:
  // like any failed send to the binary, that ends the phone (1000, forward_failed).
  expect(await p2.waitClose()).toEqual({ code: 1000, reason: '' });
  await expectClosed(r, before, { 'client/write_failed': 1, 'server/write_failed': 1, 'client/forward_failed': 1 });
  expect(b1.closed).toBeUndefined();

  // The frame stuck in each socket past the deadline was never written: it is a write_failed
  // drop, not a forwarded frame, and the ledger still balances.
  const text = await r.scrape();
  const drop = (t: string, direction: string): number =>
    value(t, 'pyrycode_relay_frames_dropped_total', { direction, reason: 'write_failed' });
  // (Global expect is fine here: only throwing assertions, no soft ones or snapshots.)
  for (const direction of ['binary_to_phone', 'phone_to_binary']) {
    const sumDropped = samples(text, 'pyrycode_relay_frames_dropped_total')
      .filter((s) => s.labels.direction === direction)
      .reduce((a, s) => a + s.value, 0);
    expect(value(text, 'pyrycode_relay_frames_received_total', { direction }), `${direction} ledger`).toBe(
      value(text, 'pyrycode_relay_frames_forwarded_total', { direction }) + sumDropped,
    );
  }
  const stalled = { binary_to_phone: drop(text, 'binary_to_phone'), phone_to_binary: drop(text, 'phone_to_binary') };
  expect(
    Math.min(stalled.binary_to_phone, stalled.phone_to_binary),
    `dropped{write_failed} ${JSON.stringify(stalled)}`,
  ).toBeGreaterThanOrEqual(1);
}

// =============================================================================================
// 2. received = forwarded + dropped, per direction
// =============================================================================================

describe('frames and bytes: received = forwarded + dropped once idle', () => {
  it('holds exactly per direction after a mixed hostile workload on several server-ids', async () => {
    const r = await boot({ gracePeriodMs: 10_000, probeTimeoutMs: 300, heartbeatIntervalMs: 60_000 });
    const metrics = r.relay.metrics;

    // What the clients sent and the relay must have read.
    const sent = { p2bFrames: 0, p2bBytes: 0, b2pFrames: 0, b2pBytes: 0 };
    const fromPhone = (phone: TestClient, data: string): void => {
      phone.send(data);
      sent.p2bFrames++;
      sent.p2bBytes += Buffer.byteLength(data);
    };
    /** `counted`: false for push wakes and close directives without a frame. */
    const fromBinary = (binary: TestClient, data: string, counted = true): void => {
      binary.send(data);
      if (counted) {
        sent.b2pFrames++;
        sent.b2pBytes += Buffer.byteLength(data);
      }
    };
    const allRead = async (): Promise<void> => {
      await waitFor(
        () =>
          metrics.framesReceivedPhoneToBinary === sent.p2bFrames &&
          metrics.framesReceivedBinaryToPhone === sent.b2pFrames,
        5_000,
        'the relay to read everything sent so far',
      );
    };
    const connIdOf = async (phone: TestClient, binary: TestClient): Promise<string> => {
      const count = binary.messages.length + 1;
      fromPhone(phone, '{"probe":true}');
      return (JSON.parse(await binary.message(count)) as { conn_id: string }).conn_id;
    };
    const phones: TestClient[] = [];
    const binaries: TestClient[] = [];
    const phone = async (serverId: string): Promise<TestClient> => {
      const p = await connectPhone(r, serverId);
      phones.push(p);
      return p;
    };
    const binary = async (serverId: string): Promise<TestClient> => {
      const b = await connectBinary(r, serverId);
      binaries.push(b);
      return b;
    };

    // mix-a: valid traffic, malformed envelopes, unknown conn_ids, a directive with frames queued
    // behind it, a flooded phone. mix-b: malformed phone frames, a phone frame during grace.
    // mix-c: a displaced binary that keeps sending. mix-d: frames queued at the drain.
    const ba = await binary('mix-a');
    const pa1 = await phone('mix-a');
    const pa2 = await phone('mix-a');
    const pa3 = await phone('mix-a');
    const idA1 = await connIdOf(pa1, ba);
    const idA2 = await connIdOf(pa2, ba);
    const idA3 = await connIdOf(pa3, ba);
    const bb = await binary('mix-b');
    const pb1 = await phone('mix-b');
    const pb2 = await phone('mix-b');
    const idB1 = await connIdOf(pb1, bb);
    await connIdOf(pb2, bb);
    const bd = await binary('mix-d');
    const pd = await phone('mix-d');
    const idD = await connIdOf(pd, bd);

    // Valid frames both ways (inner frames keep their bytes; phone frames get compacted).
    for (let i = 0; i < 10; i++) {
      fromPhone(pa1, `{ "up" : ${i}, "pad": "${'u'.repeat(i * 10)}" }`);
      fromBinary(ba, `{"conn_id":"${idA1}","frame":{ "down" : ${i} , "pad":"${'d'.repeat(i * 7)}" }}`);
    }
    for (let i = 0; i < 3; i++) {
      fromPhone(pb1, `[${i}, true, null]`);
      fromBinary(bb, `{"conn_id":"${idB1}","frame":"b-${i}"}`);
      fromPhone(pd, `{"d":${i}}`);
      fromBinary(bd, `{"conn_id":"${idD}","frame":{"d":${i}}}`);
    }
    await pa1.message(10);
    await pb1.message(3);
    await pd.message(3);
    await allRead();

    // Malformed envelopes (4), unknown conn_ids (3); a push wake and a frameless close directive
    // for an unknown phone are control messages, not frames.
    for (const bad of ['not json', '[1,2]', '{"frame":{"a":1}}', `{"conn_id":"${idA1}"}`]) fromBinary(ba, bad);
    fromBinary(ba, '{"conn_id":"client-mix-a-00000000","frame":{"x":1}}');
    fromBinary(ba, '{"conn_id":"client-mix-b-00000000","frame":{"forged":1}}'); // another id's namespace
    fromBinary(bb, '{"conn_id":"client-mix-b-00000000","frame":[1]}');
    fromBinary(ba, '{"push_wake":{"platform":"fcm","token":"tok"}}', false);
    fromBinary(ba, '{"conn_id":"client-mix-a-00000000","close_code":4000}', false);
    let expectedUnknown = 3;
    await allRead();

    // A non-JSON phone frame (malformed_frame) and the frame right behind it (closing).
    fromPhone(pb2, 'definitely not json');
    fromPhone(pb2, '{"after":"malformed"}');
    expect(await pb2.waitClose()).toEqual({ code: 1000, reason: '' });

    // A phone frame while its binary is in grace (write_failed): the phone is closed.
    bb.close(1000);
    await waitFor(() => r.relay.registry.graceEntry('mix-b'), 3_000, 'mix-b in grace');
    fromPhone(pb1, '{"while":"gracing"}');
    expect(await pb1.waitClose()).toEqual({ code: 1000, reason: '' });
    await allRead();

    // A close directive (with a frame) queued behind a backlog, with 3 frames queued behind it
    // (phone_gone), then 2 frames to the closed phone (unknown_conn_id).
    const sessionA2 = r.relay.registry.phoneFor('mix-a', idA2)!;
    underlying(pa2).pause();
    await backUp(sessionA2, (data) => fromBinary(ba, data), idA2, allRead);
    fromBinary(ba, `{"conn_id":"${idA2}","close_code":4401,"frame":{"bye":1}}`);
    for (let i = 0; i < 3; i++) fromBinary(ba, `{"conn_id":"${idA2}","frame":{"queued":${i}}}`);
    await allRead();
    underlying(pa2).resume();
    expect(await pa2.waitClose(10_000)).toEqual({ code: 4401, reason: '' });
    expect(pa2.messages.at(-1)).toBe('{"bye":1}');
    for (let i = 0; i < 2; i++) fromBinary(ba, `{"conn_id":"${idA2}","frame":{"gone":${i}}}`);
    expectedUnknown += 2;
    await allRead();

    // A paused phone flooded past its outbox budget (backlog_full); it reads again afterwards, so
    // every frame the relay wrote reaches it.
    underlying(pa3).pause();
    const floodA3 = await floodUntilBacklogFull(r, ba, idA3, (data) => fromBinary(ba, data));
    await allRead();
    underlying(pa3).resume();
    expect(await pa3.waitClose(10_000)).toEqual({ code: 1011, reason: 'phone backlog full' });

    // mix-c: an unresponsive binary is taken over; it keeps sending without reading the relay's
    // close frame (closing).
    const bc1 = new TestClient(`${r.wsUrl}/v1/server`, binaryHeaders('mix-c'), { autoPong: false });
    await bc1.open();
    await waitFor(() => r.relay.registry.binaryFor('mix-c'), 3_000, 'mix-c claim');
    underlying(bc1).pause();
    const bc2 = new TestClient(`${r.wsUrl}/v1/server`, binaryHeaders('mix-c'));
    binaries.push(bc2);
    await bc2.open();
    await waitFor(() => r.logs.some((l) => l.msg === 'server_id_takeover'), 3_000, 'takeover of mix-c');
    for (const m of ['{"conn_id":"client-mix-c-00000000","frame":1}', 'garbage', '{}']) fromBinary(bc1, m);
    // Control messages (push wakes, even invalid ones, and frameless close directives) from a
    // binary that lost its slot are not frames there either.
    fromBinary(bc1, '{"push_wake":{}}', false);
    fromBinary(bc1, '{"push_wake":{"platform":"fcm","token":"tok"}}', false);
    fromBinary(bc1, '{"conn_id":"client-mix-c-00000000","close_code":4000}', false);
    // A frame behind them, so that reading it means they were read too.
    fromBinary(bc1, '{"conn_id":"client-mix-c-00000000","frame":2}');
    await allRead();
    bc1.ws.terminate();

    // mix-d: frames queued in a paused phone's outbox when a drain starts (shutdown).
    const sessionD = r.relay.registry.phoneFor('mix-d', idD)!;
    const sentToDBefore = 3;
    underlying(pd).pause();
    const backedUp = await backUp(sessionD, (data) => fromBinary(bd, data), idD, allRead);
    for (let i = 0; i < 5; i++) fromBinary(bd, `{"conn_id":"${idD}","frame":{"at_drain":${i}}}`);
    await allRead();
    const draining = r.relay.drain(5_000);
    underlying(pd).resume();
    expect(await draining).toBe(true);
    expect(await pd.waitClose()).toEqual({ code: 1001, reason: 'shutting down' });

    // Idle: the ledger balances and stays balanced.
    const ledger = async (): Promise<{ text: string; ok: boolean }> => {
      const text = await r.scrape();
      const ok = (['phone_to_binary', 'binary_to_phone'] as const).every((direction) => {
        const dropped = samples(text, 'pyrycode_relay_frames_dropped_total')
          .filter((s) => s.labels.direction === direction)
          .reduce((a, s) => a + s.value, 0);
        return (
          value(text, 'pyrycode_relay_frames_received_total', { direction }) ===
          value(text, 'pyrycode_relay_frames_forwarded_total', { direction }) + dropped
        );
      });
      return { text, ok };
    };
    let stable = 0;
    let text = '';
    await waitFor(
      async () => {
        const l = await ledger();
        text = l.text;
        stable = l.ok ? stable + 1 : 0;
        return stable >= 3;
      },
      5_000,
      'received = forwarded + dropped to hold and stay stable',
      50,
    );

    const v = (series: string, labels: Record<string, string> = {}): number => value(text, series, labels);
    const P2B = { direction: 'phone_to_binary' };
    const B2P = { direction: 'binary_to_phone' };
    const dropped = (direction: string, reason: string): number =>
      v('pyrycode_relay_frames_dropped_total', { direction, reason });

    // Received: exactly what the clients sent (push wakes and frameless directives excluded).
    expect(v('pyrycode_relay_frames_received_total', P2B)).toBe(sent.p2bFrames);
    expect(v('pyrycode_relay_bytes_received_total', P2B)).toBe(sent.p2bBytes);
    expect(v('pyrycode_relay_frames_received_total', B2P)).toBe(sent.b2pFrames);
    expect(v('pyrycode_relay_bytes_received_total', B2P)).toBe(sent.b2pBytes);

    // The equation, per direction.
    for (const direction of ['phone_to_binary', 'binary_to_phone']) {
      const sumDropped = samples(text, 'pyrycode_relay_frames_dropped_total')
        .filter((s) => s.labels.direction === direction)
        .reduce((a, s) => a + s.value, 0);
      expect(v('pyrycode_relay_frames_received_total', { direction }), direction).toBe(
        v('pyrycode_relay_frames_forwarded_total', { direction }) + sumDropped,
      );
    }

    // Each provoked drop reason.
    expect(dropped('phone_to_binary', 'malformed_frame')).toBe(1);
    expect(dropped('phone_to_binary', 'closing')).toBe(1);
    expect(dropped('phone_to_binary', 'write_failed')).toBe(1);
    expect(dropped('phone_to_binary', 'no_binary')).toBe(0);
    expect(dropped('binary_to_phone', 'malformed_envelope')).toBe(4);
    expect(dropped('binary_to_phone', 'phone_gone')).toBe(3);
    expect(dropped('binary_to_phone', 'closing')).toBe(4);
    // The flood: the overflowing frame and those queued behind the budget; frames the binary sent
    // after the relay gave up on the phone are unknown_conn_id.
    // pa3 received nothing but flood frames.
    const lostA3 = floodA3 - pa3.messages.length;
    const backlogFull = dropped('binary_to_phone', 'backlog_full');
    expect(backlogFull).toBeGreaterThan(1);
    expect(backlogFull).toBeLessThanOrEqual(lostA3);
    expect(dropped('binary_to_phone', 'unknown_conn_id')).toBe(expectedUnknown + lostA3 - backlogFull);
    // Every frame for the drained phone was either written or dropped as shutdown.
    const sentToD = sentToDBefore + backedUp + 5;
    const shutdown = dropped('binary_to_phone', 'shutdown');
    expect(shutdown).toBeGreaterThanOrEqual(5);
    expect(shutdown).toBe(sentToD - pd.messages.length);
    expect(dropped('binary_to_phone', 'write_failed')).toBe(0);

    // Forwarded frames and bytes are what the receiving clients got: inner frames at the phones,
    // envelopes (not close notices) at the binaries.
    const phoneMessages = phones.flatMap((p) => p.messages);
    const envelopes = binaries.flatMap((b) => b.messages).filter((m) => /^\{"conn_id":"client-[^"]*","frame":/.test(m));
    expect(v('pyrycode_relay_frames_forwarded_total', B2P)).toBe(phoneMessages.length);
    expect(v('pyrycode_relay_bytes_forwarded_total', B2P)).toBe(
      phoneMessages.reduce((a, m) => a + Buffer.byteLength(m), 0),
    );
    expect(v('pyrycode_relay_frames_forwarded_total', P2B)).toBe(envelopes.length);
    expect(v('pyrycode_relay_bytes_forwarded_total', P2B)).toBe(
      envelopes.reduce((a, m) => a + Buffer.byteLength(m), 0),
    );
  }, 30_000);
});

/** Sends 100 KB frames to a paused phone until the relay's socket towards it holds more than the
 * outbox's socket window (so later frames stay queued in the outbox). Returns the frames sent. */
async function backUp(
  session: PhoneSession,
  send: (data: string) => void,
  connId: string,
  allRead: () => Promise<void>,
): Promise<number> {
  const frame = `{"conn_id":"${connId}","frame":"${'q'.repeat(100_000)}"}`;
  let count = 0;
  for (;;) {
    if (session.peer.bufferedAmount >= SOCKET_WINDOW) {
      await sleep(30);
      if (session.peer.bufferedAmount >= SOCKET_WINDOW) return count;
    }
    if (count >= 400) throw new Error('the relay socket towards the paused phone never backed up');
    for (let i = 0; i < 4; i++) {
      send(frame);
      count++;
    }
    await allRead();
    await sleep(10);
  }
}

// =============================================================================================
// 3. upgrade_rejections_total
// =============================================================================================

describe('upgrade_rejections_total', () => {
  it('broken handshakes on both endpoints: not_websocket_426, bad_method_405, bad_version_400, bad_key_400', async () => {
    const r = await boot();
    for (const [endpoint, path, headers] of [
      ['server', '/v1/server', binaryHeaders('hs-srv')],
      ['client', '/v1/client', phoneHeaders('hs-srv')],
    ] as const) {
      const gate = Object.entries(headers);
      expect((await httpGet(`${r.httpUrl}${path}`, { headers })).status, `${endpoint} plain GET`).toBe(426);
      const post = await rawExchange(r.port, requestText('POST', path, [...gate, ...WS_HANDSHAKE]));
      expect(statusOf(post), `${endpoint} POST upgrade`).toBe(405);
      const v8 = WS_HANDSHAKE.map(([k, v]): [string, string] => (k === 'Sec-WebSocket-Version' ? [k, '8'] : [k, v]));
      expect(
        statusOf(await rawExchange(r.port, requestText('GET', path, [...gate, ...v8]))),
        `${endpoint} version 8`,
      ).toBe(400);
      const badKey = WS_HANDSHAKE.map(([k, v]): [string, string] =>
        k === 'Sec-WebSocket-Key' ? [k, 'short'] : [k, v],
      );
      expect(
        statusOf(await rawExchange(r.port, requestText('GET', path, [...gate, ...badKey]))),
        `${endpoint} bad key`,
      ).toBe(400);
    }
    expectCells(cells(await r.scrape(), UPGRADE_REJECTIONS, ['endpoint', 'reason']), {
      'client/not_websocket_426': 1,
      'client/bad_method_405': 1,
      'client/bad_version_400': 1,
      'client/bad_key_400': 1,
      'server/not_websocket_426': 1,
      'server/bad_method_405': 1,
      'server/bad_version_400': 1,
      'server/bad_key_400': 1,
    });
    // Nothing reached the registry and no WebSocket was opened.
    expect(r.relay.liveConnections).toBe(0);
  });

  it('the connection cap on both endpoints: conn_cap_503', async () => {
    const r = await boot({ maxConnections: 1 });
    await connectBinary(r, 'capped');
    const server = await upgradeStatus(r, '/v1/server', binaryHeaders('capped-2'));
    expect(server).toMatchObject({ status: 503, body: '\n' });
    const client = await upgradeStatus(r, '/v1/client', phoneHeaders('capped'));
    expect(client).toMatchObject({ status: 503, body: '\n' });
    expectCells(cells(await r.scrape(), UPGRADE_REJECTIONS, ['endpoint', 'reason']), {
      'client/conn_cap_503': 1,
      'server/conn_cap_503': 1,
    });
  });

  it('rate-limit (429) and header-gate (400) refusals are not upgrade_rejections', async () => {
    const r = await boot({ rateLimitBurst: 1, rateLimitIntervalMs: 60_000 });
    expect((await upgradeStatus(r, '/v1/client', { 'User-Agent': 'x' })).status).toBe(400);
    expect((await upgradeStatus(r, '/v1/server', binaryHeaders('rl'))).status).toBe(429);
    expectCells(cells(await r.scrape(), UPGRADE_REJECTIONS, ['endpoint', 'reason']), {});
  });

  it('markNotReady() alone refuses nothing; upgrades during a drain get 503 draining_503 on both endpoints', async () => {
    const r = await boot();
    await connectBinary(r, 'draining');
    r.relay.markNotReady();
    // Not ready is not draining: new connections are still accepted.
    const phone = await connectPhone(r, 'draining');
    expect(phone.closed).toBeUndefined();
    expectCells(cells(await r.scrape(), UPGRADE_REJECTIONS, ['endpoint', 'reason']), {});
    // Hold the drain open: the phone does not read the relay's close frame until resumed.
    underlying(phone).pause();
    let drained = false;
    const draining = r.relay.drain(5_000).then((complete) => {
      drained = true;
      return complete;
    });
    const server = await upgradeStatus(r, '/v1/server', binaryHeaders('late-binary'));
    const client = await upgradeStatus(r, '/v1/client', phoneHeaders('draining'));
    expect(drained, 'the drain was still running').toBe(false);
    expect(server).toMatchObject({ status: 503, body: '\n' });
    expect(client).toMatchObject({ status: 503, body: '\n' });
    underlying(phone).resume();
    expect(await draining).toBe(true);
    expectCells(cells(await r.scrape(), UPGRADE_REJECTIONS, ['endpoint', 'reason']), {
      'client/draining_503': 1,
      'server/draining_503': 1,
    });
  });
});

// =============================================================================================
// 4. http_errors_total
// =============================================================================================

describe('http_errors_total', () => {
  it('unknown paths (plain and upgrade) -> not_found_404; routes are not errors', async () => {
    const r = await boot();
    const plain = await httpGet(`${r.httpUrl}/nope`);
    expect(plain).toMatchObject({ status: 404, body: '404 page not found\n' });
    const slash = await httpGet(`${r.httpUrl}/v1/server/`, { headers: binaryHeaders('x') });
    expect(slash.status).toBe(404);
    const upgrade = await upgradeStatus(r, '/v1/servers', binaryHeaders('x'));
    expect(upgrade).toMatchObject({ status: 404, body: '404 page not found\n' });
    expect((await httpGet(`${r.httpUrl}/healthz`)).status).toBe(200);
    expect((await httpGet(`${r.httpUrl}/readyz`)).status).toBe(200);
    expectCells(cells(await r.scrape(), HTTP_ERRORS, ['reason']), { not_found_404: 3 });
  });

  it('headers over 64 KiB -> header_too_large_431; malformed requests -> bad_request_400', async () => {
    const r = await boot();
    const big = await rawExchange(r.port, requestText('GET', '/healthz', [['X-Pad', 'a'.repeat(65 * 1024)]]));
    expect(statusOf(big)).toBe(431);
    const line = await rawExchange(r.port, 'THIS IS NOT HTTP\r\n\r\n');
    expect(statusOf(line)).toBe(400);
    const header = await rawExchange(r.port, 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon here\r\n\r\n');
    expect(statusOf(header)).toBe(400);
    expectCells(cells(await r.scrape(), HTTP_ERRORS, ['reason']), { header_too_large_431: 1, bad_request_400: 2 });
  });
  // header_timeout_408: see 'slow timers' above (runs in parallel with the send-deadline test).
});

// =============================================================================================
// 5. Grace reclaims and parked phones
// =============================================================================================

const RECLAIM = 'pyrycode_relay_grace_reclaim_seconds';

describe('grace_reclaims_total, grace_reclaim_seconds, phones_parked', () => {
  it('one reclaim ~300 ms into a 2 s window: counter, histogram buckets, parked phones', async () => {
    const r = await boot({ gracePeriodMs: 2_000 });
    const first = await connectBinary(r, 'reclaim');
    const phones = [await connectPhone(r, 'reclaim'), await connectPhone(r, 'reclaim')];
    let text = await r.scrape();
    expect(value(text, 'pyrycode_relay_phones_parked')).toBe(0);
    expect(value(text, 'pyrycode_relay_grace_reclaims_total')).toBe(0);
    // No observation yet: the family is there with every bucket at 0 (telemetry/empty-histograms.ts).
    expect(value(text, `${RECLAIM}_count`)).toBe(0);
    expect(value(text, `${RECLAIM}_sum`)).toBe(0);
    expect(samples(text, `${RECLAIM}_bucket`).every((b) => b.value === 0)).toBe(true);

    first.close(1000);
    const startedAt = await waitFor(() => r.relay.registry.graceStartedAt('reclaim'), 3_000, 'grace armed');
    expect(await r.metric('pyrycode_relay_phones_parked')).toBe(2);
    expect(await r.metric('pyrycode_relay_connected_binaries')).toBe(0);
    await sleep(Math.max(0, startedAt + 300 - Date.now()));
    await connectBinary(r, 'reclaim');
    const elapsed = (Date.now() - startedAt) / 1000;
    for (const phone of phones)
      expect(await phone.waitClose()).toEqual({ code: 4404, reason: 'binary reclaimed server-id' });

    text = await r.scrape();
    expect(value(text, 'pyrycode_relay_grace_reclaims_total')).toBe(1);
    expect(value(text, 'pyrycode_relay_phones_parked')).toBe(0);
    expect(value(text, `${RECLAIM}_count`)).toBe(1);
    const sum = value(text, `${RECLAIM}_sum`);
    expect(sum).toBeGreaterThanOrEqual(0.25);
    expect(sum).toBeLessThanOrEqual(1.0);
    expect(sum).toBeLessThanOrEqual(elapsed + 0.001);
    // Buckets: the grace window (2 s) x [0.01 .. 1], then +Inf, cumulative.
    const buckets = samples(text, `${RECLAIM}_bucket`);
    expect(buckets.map((b) => b.labels.le)).toEqual(['0.02', '0.05', '0.1', '0.2', '0.5', '1', '1.5', '2', '+Inf']);
    const byLe = Object.fromEntries(buckets.map((b) => [b.labels.le!, b.value]));
    expect(byLe).toEqual({ '0.02': 0, '0.05': 0, '0.1': 0, '0.2': 0, '0.5': 1, '1': 1, '1.5': 1, '2': 1, '+Inf': 1 });
    expect(text).toContain(`# TYPE ${RECLAIM} histogram`);
    // One family only: the real data point replaced the empty one.
    expect(text.split(`# HELP ${RECLAIM} `)).toHaveLength(2);
    expect(samples(text, `${RECLAIM}_count`)).toHaveLength(1);
  });

  it('a takeover of a slot that went into grace during the probe counts as a reclaim', async () => {
    const r = await boot({ gracePeriodMs: 2_000, probeTimeoutMs: 2_000 });
    const incumbent = new TestClient(`${r.wsUrl}/v1/server`, binaryHeaders('grace-takeover'), { autoPong: false });
    let pinged = 0;
    incumbent.ws.on('ping', () => pinged++);
    await incumbent.open();
    await waitFor(() => r.relay.registry.binaryFor('grace-takeover'), 3_000, 'claim');
    const phone = await connectPhone(r, 'grace-takeover');
    const challenger = new TestClient(`${r.wsUrl}/v1/server`, binaryHeaders('grace-takeover'));
    await challenger.open();
    await waitFor(() => pinged > 0, 3_000, 'the probe ping');
    // The unresponsive incumbent leaves while the probe runs: its slot enters grace, then the
    // challenger takes it over.
    incumbent.close(1000);
    expect(await phone.waitClose()).toEqual({ code: 4404, reason: 'binary reclaimed server-id' });
    await waitFor(() => r.logs.some((l) => l.msg === 'server_id_takeover'), 3_000, 'takeover');
    expect(challenger.closed).toBeUndefined();
    const text = await r.scrape();
    expect(value(text, 'pyrycode_relay_grace_reclaims_total')).toBe(1);
    expect(value(text, `${RECLAIM}_count`)).toBe(1);
    expect(value(text, `${RECLAIM}_sum`)).toBeLessThan(0.5);
    expect(value(text, 'pyrycode_relay_phones_parked')).toBe(0);
  });

  it('an expiry is not a reclaim; parked phones drop to 0 when it evicts them', async () => {
    const r = await boot({ gracePeriodMs: 400 });
    const binary = await connectBinary(r, 'no-reclaim');
    const phones = [
      await connectPhone(r, 'no-reclaim'),
      await connectPhone(r, 'no-reclaim'),
      await connectPhone(r, 'no-reclaim'),
    ];
    await connectBinary(r, 'bystander');
    await connectPhone(r, 'bystander');
    binary.close(1000);
    await waitFor(() => r.relay.registry.graceEntry('no-reclaim'), 3_000, 'grace armed');
    // Only the phones waiting on the gracing binary are parked.
    expect(await r.metric('pyrycode_relay_phones_parked')).toBe(3);
    expect(await r.metric('pyrycode_relay_connected_phones')).toBe(4);
    for (const phone of phones) expect(await phone.waitClose()).toEqual({ code: 1000, reason: '' });
    await waitFor(async () => (await r.metric('pyrycode_relay_grace_expiries_total')) === 1, 3_000, 'expiry');
    const text = await r.scrape();
    expect(value(text, 'pyrycode_relay_phones_parked')).toBe(0);
    expect(value(text, 'pyrycode_relay_grace_reclaims_total')).toBe(0);
    // No observation: the histogram is still all zeros.
    expect(value(text, `${RECLAIM}_count`)).toBe(0);
  });
});

// =============================================================================================
// 6. build_info and ready
// =============================================================================================

describe('build_info and ready', () => {
  it('build_info has exactly one sample: the package version and the running Node version, value 1', async () => {
    const r = await boot();
    const info = samples(await r.scrape(), 'pyrycode_relay_build_info');
    expect(info).toEqual([{ labels: { version: PKG_VERSION, node_version: process.version }, value: 1 }]);
  });

  it('ready is 1 while serving and 0 after markNotReady()', async () => {
    const r = await boot();
    expect(await r.metric('pyrycode_relay_ready')).toBe(1);
    r.relay.markNotReady();
    expect(await r.metric('pyrycode_relay_ready')).toBe(0);
    expect(samples(await r.scrape(), 'pyrycode_relay_ready')).toHaveLength(1);
  });
});
