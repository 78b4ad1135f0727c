// A peer whose close frame the relay received keeps its own close code (issue #17.1): a client that
// sends close 1009 (as coder/websocket does on an oversized message) and then holds the TCP
// connection open must be reported to the binary and counted with 1009, not relabelled 1011
// "heartbeat timeout" by a heartbeat tick that falls inside the close wait. Raw TCP clients, real
// relay, 1 s heartbeat.

import { describe, expect, it } from 'vitest';
import {
  binaryHeaders,
  connectBinary,
  connectPhone,
  phoneHeaders,
  type TestClient,
  type TestRelay,
  useRelays,
} from '../helpers/relays.js';
import { closedCell } from '../helpers/scrape.js';
import { clientFrame, closePayload, RawWs } from '../helpers/ws-frames.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { CLOSE_HANDSHAKE_TIMEOUT_MS } from '../../src/session/peer.js';

const HEARTBEAT_MS = 1_000;
/** Our side stays open after the relay's FIN. */
const HOLD = { allowHalfOpen: true };

const { boot, track } = useRelays();

/** Sends a close frame with `code` and keeps the TCP connection open (never ends or destroys it). */
function closeAndHold(raw: RawWs, code: number, reason: string): void {
  raw.write(clientFrame(0x8, closePayload(code, reason)));
}

/** The grace window ran from `startedAt`: the phone is closed 1000 (empty reason) one grace period
 * later, well before the 5 s close wait of the binary's socket would have ended. */
async function expectExpiry(r: TestRelay, phone: TestClient, startedAt: number, graceMs: number): Promise<void> {
  const closed = await waitFor(() => phone.closed, CLOSE_HANDSHAKE_TIMEOUT_MS + 3_000, 'phone closed at expiry');
  const afterMs = Date.now() - startedAt;
  expect(closed).toEqual({ code: 1000, reason: '' });
  expect(afterMs).toBeGreaterThanOrEqual(graceMs - 100);
  expect(afterMs).toBeLessThan(CLOSE_HANDSHAKE_TIMEOUT_MS - 1_000);
  expect(await r.metric('pyrycode_relay_grace_expiries_total')).toBe(1);
}

/** A raw binary that keeps TCP open after the relay's FIN, holding `serverId`. */
async function rawBinary(r: TestRelay, serverId: string): Promise<RawWs> {
  const binary = track(await RawWs.open(r.port, '/v1/server', binaryHeaders(serverId), HOLD));
  await waitFor(() => r.relay.registry.binaryFor(serverId) !== undefined, 3_000, 'claim');
  return binary;
}

/** A raw phone that keeps TCP open after the relay's FIN, registered on `serverId`; its conn_id
 * learned from one routed frame. */
async function rawPhone(r: TestRelay, binary: TestClient, serverId: string): Promise<{ phone: RawWs; connId: string }> {
  const before = r.relay.metrics.phonesSinceBoot;
  const phone = track(await RawWs.open(r.port, '/v1/client', phoneHeaders(serverId), HOLD));
  await waitFor(() => r.relay.metrics.phonesSinceBoot > before, 3_000, 'phone registration');
  phone.sendText('{"hello":1}');
  const connId = (JSON.parse(await binary.message(1)) as { conn_id: string }).conn_id;
  return { phone, connId };
}

async function noticeFor(binary: TestClient, connId: string): Promise<string> {
  const prefix = `{"conn_id":"${connId}","close_code":`;
  return waitFor(
    () => binary.messages.find((m) => m.startsWith(prefix)),
    CLOSE_HANDSHAKE_TIMEOUT_MS + 3 * HEARTBEAT_MS,
    `close notice for ${connId}`,
  );
}

describe('a peer that sent its close frame and holds TCP open', () => {
  it('phone: the binary is told 1009 and the close counts as too_big_1009, across several heartbeat ticks', async () => {
    const r = await boot({ heartbeatIntervalMs: HEARTBEAT_MS });
    const binary = await connectBinary(r, 'hold-phone');
    const { phone, connId } = await rawPhone(r, binary, 'hold-phone');

    const closedAt = Date.now();
    closeAndHold(phone, 1009, 'message too big');
    // The relay answers the close frame with the same code and then waits for TCP to end: several
    // heartbeat ticks fall inside that wait.
    await waitFor(() => phone.closeFrame(), 3_000, "relay's reciprocal close frame");
    expect(phone.closeFrame()).toEqual({ code: 1009, reason: 'message too big' });

    expect(await noticeFor(binary, connId)).toBe(`{"conn_id":"${connId}","close_code":1009}`);
    // The binary learns when the close frame arrives, not when the phone's TCP finally ends.
    expect(Date.now() - closedAt).toBeLessThan(CLOSE_HANDSHAKE_TIMEOUT_MS / 2);
    // The count moves when the socket is gone (the relay drops it after its close-handshake wait).
    await waitFor(
      async () => (await r.metric(closedCell('client', 'too_big_1009'))) === 1,
      CLOSE_HANDSHAKE_TIMEOUT_MS + 3 * HEARTBEAT_MS,
      'connections_closed{client,too_big_1009} = 1',
    );
    expect(await r.metric(closedCell('client', 'heartbeat_timeout'))).toBe(0);
    expect(r.logs.filter((l) => l.msg === 'phone_unregistered')).toHaveLength(1);
    // The binary itself is untouched.
    expect(binary.closed).toBeUndefined();
    expect(r.relay.registry.binaryFor('hold-phone')).toBeDefined();
  });

  it('binary: the close counts as the code it sent (too_big_1009), not heartbeat_timeout', async () => {
    const r = await boot({ heartbeatIntervalMs: HEARTBEAT_MS, gracePeriodMs: 10_000 });
    const binary = await rawBinary(r, 'hold-binary');

    closeAndHold(binary, 1009, 'message too big');
    await waitFor(() => binary.closeFrame(), 3_000, "relay's reciprocal close frame");
    expect(binary.closeFrame()).toEqual({ code: 1009, reason: 'message too big' });
    await waitFor(
      async () => (await r.metric(closedCell('server', 'too_big_1009'))) === 1,
      CLOSE_HANDSHAKE_TIMEOUT_MS + 3 * HEARTBEAT_MS,
      'connections_closed{server,too_big_1009} = 1',
    );
    expect(await r.metric(closedCell('server', 'heartbeat_timeout'))).toBe(0);
  });

  it('binary: its grace window starts when its close frame arrives, not when TCP finally ends', async () => {
    const GRACE_MS = 500;
    const r = await boot({ heartbeatIntervalMs: HEARTBEAT_MS, gracePeriodMs: GRACE_MS });
    const binary = await rawBinary(r, 'hold-grace');
    const phone = await connectPhone(r, 'hold-grace');

    const closedAt = Date.now();
    closeAndHold(binary, 1000, 'bye');
    await waitFor(() => binary.closeFrame(), 3_000, "relay's reciprocal close frame");
    expect(binary.closeFrame()).toEqual({ code: 1000, reason: 'bye' });
    // The window expires one grace period after the close frame: the phone is closed 1000, empty
    // reason, while the binary still holds its TCP connection (the relay waits up to 5 s for it).
    await expectExpiry(r, phone, closedAt, GRACE_MS);
  });

  it('binary: a successor arriving while the old binary holds TCP after its close frame reclaims at once (no probe)', async () => {
    const r = await boot({ heartbeatIntervalMs: HEARTBEAT_MS, gracePeriodMs: 10_000, probeTimeoutMs: 2_000 });
    const old = await rawBinary(r, 'hold-reclaim');
    const phone = await connectPhone(r, 'hold-reclaim');

    closeAndHold(old, 1001, 'restarting');
    await waitFor(() => old.closeFrame(), 3_000, "relay's reciprocal close frame");
    const successor = await connectBinary(r, 'hold-reclaim');
    // A reclaim: the phone is closed 4404 "binary reclaimed server-id" and the successor holds the id.
    expect(await waitFor(() => phone.closed, 3_000, 'phone evicted')).toEqual({
      code: 4404,
      reason: 'binary reclaimed server-id',
    });
    expect(successor.closed).toBeUndefined();
    expect(await r.metric('pyrycode_relay_grace_reclaims_total')).toBe(1);
    expect(r.logs.filter((l) => l.msg === 'server_id_takeover')).toHaveLength(0);
    expect(r.logs.filter((l) => l.msg === 'server_id_conflict')).toHaveLength(0);
  });

  it('a phone closing with 1000 while its heartbeat is overdue is still reported with 1000', async () => {
    // The raw client never answers pings; it sends its close frame just after the first ping, so
    // the next tick would find the ping unanswered and the peer CLOSING.
    const r = await boot({ heartbeatIntervalMs: HEARTBEAT_MS });
    const binary = await connectBinary(r, 'hold-late');
    const { phone, connId } = await rawPhone(r, binary, 'hold-late');
    await waitFor(() => phone.frames().some((f) => f.opcode === 0x9), 3 * HEARTBEAT_MS, 'first ping');
    closeAndHold(phone, 1000, '');
    await sleep(50);
    expect(await noticeFor(binary, connId)).toBe(`{"conn_id":"${connId}","close_code":1000}`);
    await waitFor(
      async () => (await r.metric(closedCell('client', 'normal_1000'))) === 1,
      CLOSE_HANDSHAKE_TIMEOUT_MS + 3 * HEARTBEAT_MS,
      'connections_closed{client,normal_1000} = 1',
    );
    expect(await r.metric(closedCell('client', 'heartbeat_timeout'))).toBe(0);
  });
});

describe('a phone the relay closes for a protocol violation that never ends TCP', () => {
  it('an oversize message: the binary is told 1009 at the close frame, not when the 5 s close wait ends', async () => {
    const r = await boot({ heartbeatIntervalMs: 10_000 });
    const binary = await connectBinary(r, 'big-phone');
    const { phone, connId } = await rawPhone(r, binary, 'big-phone');

    // One byte over the 262,144-byte limit: ws closes the phone 1009 itself; the raw phone never
    // answers that close frame and keeps TCP open.
    const sentAt = Date.now();
    phone.sendText(Buffer.alloc(262_145, 0x31));
    await waitFor(() => phone.closeFrame(), 3_000, "the relay's 1009 close frame");
    expect(phone.closeFrame()).toEqual({ code: 1009, reason: '' });
    expect(await noticeFor(binary, connId)).toBe(`{"conn_id":"${connId}","close_code":1009}`);
    expect(Date.now() - sentAt).toBeLessThan(CLOSE_HANDSHAKE_TIMEOUT_MS / 2);
  });
});

describe('a binary the relay closes that never answers', () => {
  it('heartbeat timeout: the grace window starts at the relay close frame, not when the 5 s close wait ends', async () => {
    const HB_MS = 300;
    const GRACE_MS = 500;
    const r = await boot({ heartbeatIntervalMs: HB_MS, gracePeriodMs: GRACE_MS });
    // A raw binary that answers nothing: no pong, no reciprocal close frame, TCP kept open.
    const binary = await rawBinary(r, 'dead-binary');
    const phone = await connectPhone(r, 'dead-binary');

    await waitFor(() => binary.closeFrame(), 3 * HB_MS + 2_000, 'heartbeat close frame');
    const closedAt = Date.now();
    expect(binary.closeFrame()).toEqual({ code: 1011, reason: 'heartbeat timeout' });
    await expectExpiry(r, phone, closedAt, GRACE_MS);
    // The socket itself is counted when it is gone, after the close wait, as heartbeat_timeout.
    await waitFor(
      async () => (await r.metric(closedCell('server', 'heartbeat_timeout'))) === 1,
      CLOSE_HANDSHAKE_TIMEOUT_MS + 3_000,
      'connections_closed{server,heartbeat_timeout} = 1',
    );
  });
});
