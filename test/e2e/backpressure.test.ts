// Back-pressure, heartbeat and read deadlines end to end
// (docs/protocol.md, "Backpressure: slow phones and slow binaries"; docs/decisions.md, "Backpressure"):
// real ws clients and raw TCP sockets over 127.0.0.1 against the real Relay.

import type { Socket } from 'node:net';
import { connect as netConnect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  binaryHeaders,
  connectBinary,
  connectPhone,
  phoneConnId,
  phoneHeaders,
  startRelay,
  TestClient,
  type LogLine,
  type TestRelay,
} from '../helpers/relay.js';
import { sleep, waitFor, withTimeout } from '../helpers/wait.js';
import { clientFrame, closeOf, parseServerFrames } from '../helpers/reliability.js';

let relay: TestRelay | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await relay?.close();
  relay = undefined;
});

const B2P = 'pyrycode_relay_frames_forwarded_total{direction="binary_to_phone"}';

function underlying(client: TestClient): Socket {
  return (client.ws as unknown as { _socket: Socket })._socket;
}

function logsOf(r: TestRelay, msg: string): LogLine[] {
  return r.logs.filter((l) => l.msg === msg);
}

describe('per-phone outbox', () => {
  it('a phone that stops reading is closed 1011 "phone backlog full"; its sibling gets every frame in order; the binary stays up', async () => {
    const r = await startRelay();
    relay = r;
    const binary = await connectBinary(r, 'srv-slow');
    const slow = await connectPhone(r, 'srv-slow');
    const healthy = await connectPhone(r, 'srv-slow');
    const slowId = await phoneConnId(slow, binary);
    const healthyId = await phoneConnId(healthy, binary);

    underlying(slow).pause();
    const bigEnvelope = Buffer.from(`{"conn_id":"${slowId}","frame":"${'x'.repeat(64 * 1024)}"}`);
    const expected: string[] = [];
    const backlogFull = (): LogLine | undefined =>
      r.logs.find((l) => l.msg === 'binary_forwarder_phone_enqueue_failed' && l.conn_id === slowId);
    let flooded = 0;
    // Flood until the relay gives up on the slow phone (4 MiB budget + kernel buffers), 64 MiB max.
    while (backlogFull() === undefined && flooded < 64 << 20) {
      for (let i = 0; i < 16; i++) {
        binary.send(bigEnvelope);
        flooded += bigEnvelope.length;
        const frame = `{"seq":${expected.length}}`;
        expected.push(frame);
        binary.send(`{"conn_id":"${healthyId}","frame":${frame}}`);
      }
      await waitFor(() => binary.ws.bufferedAmount < 256 * 1024, 5_000, 'binary client drained');
      await sleep(5);
    }
    const failed = await waitFor(backlogFull, 5_000, 'binary_forwarder_phone_enqueue_failed');
    expect(failed).toMatchObject({ level: 'INFO', server_id: 'srv-slow', conn_id: slowId, err: 'phone backlog full' });

    // The relay closed the slow phone with 1011 (docs/decisions.md: the notice carries the code the relay sent).
    const notice = `{"conn_id":"${slowId}","close_code":1011}`;
    await waitFor(() => binary.messages.includes(notice), 5_000, 'close notice for the slow phone');

    // The healthy sibling received every frame, in order, and keeps receiving.
    for (let i = 0; i < 5; i++) {
      const frame = `{"seq":${expected.length}}`;
      expected.push(frame);
      binary.send(`{"conn_id":"${healthyId}","frame":${frame}}`);
    }
    await waitFor(() => healthy.messages.length >= expected.length, 10_000, 'all healthy frames');
    expect(healthy.messages).toEqual(expected);
    expect(healthy.closed).toBeUndefined();
    expect(binary.closed).toBeUndefined();
    expect(r.relay.registry.binaryFor('srv-slow')).toBeDefined();

    // Let the slow client read again: if the relay's close frame reaches it, it is 1011 "phone backlog full".
    underlying(slow).resume();
    const closed = await slow.waitClose(10_000);
    if (closed.code !== 1006) expect(closed).toEqual({ code: 1011, reason: 'phone backlog full' });
    else console.warn('slow phone: relay close frame did not arrive before the TCP drop (1006)');
  });

  it('a burst of 300 x 1 KiB frames to a healthy phone is delivered completely and in order', async () => {
    const r = await startRelay();
    relay = r;
    const binary = await connectBinary(r, 'srv-burst');
    const phone = await connectPhone(r, 'srv-burst');
    const id = await phoneConnId(phone, binary);
    const pad = 'p'.repeat(1000);
    const expected: string[] = [];
    for (let i = 0; i < 300; i++) {
      const frame = `{"i":${i},"pad":"${pad}"}`;
      expected.push(frame);
      binary.send(`{"conn_id":"${id}","frame":${frame}}`);
    }
    await phone.message(300, 10_000);
    expect(phone.messages).toEqual(expected);
    expect(phone.closed).toBeUndefined();
    expect(logsOf(r, 'binary_forwarder_phone_enqueue_failed')).toEqual([]);
    await waitFor(async () => (await r.metric(B2P)) === 300, 3_000, 'b2p = 300');
  });
});

describe('heartbeat', () => {
  const INTERVAL = 200;

  it('a phone that never answers pings is closed 1011 "heartbeat timeout" within ~2 intervals', async () => {
    const r = await startRelay({ heartbeatIntervalMs: INTERVAL });
    relay = r;
    const binary = await connectBinary(r, 'srv-hb');
    const deaf = new TestClient(`${r.wsUrl}/v1/client`, phoneHeaders('srv-hb'), { autoPong: false });
    await deaf.open();
    const t0 = Date.now();
    const closed = await deaf.waitClose(3_000);
    const elapsed = Date.now() - t0;
    expect(closed).toEqual({ code: 1011, reason: 'heartbeat timeout' });
    expect(elapsed).toBeGreaterThanOrEqual(2 * INTERVAL - 100);
    expect(elapsed).toBeLessThan(2 * INTERVAL + 1_000);
    // The binary learns with the code the relay sent (docs/decisions.md).
    const notice = await binary.message(1);
    expect(notice).toMatch(/^\{"conn_id":"client-srv-hb-[0-9a-f]{8}","close_code":1011\}$/);
    expect(binary.closed).toBeUndefined();
  });

  it('a binary that never answers pings is closed 1011 "heartbeat timeout" within ~2 intervals', async () => {
    const r = await startRelay({ heartbeatIntervalMs: INTERVAL });
    relay = r;
    const deaf = new TestClient(`${r.wsUrl}/v1/server`, binaryHeaders('srv-hb-b'), { autoPong: false });
    await deaf.open();
    const t0 = Date.now();
    const closed = await deaf.waitClose(3_000);
    const elapsed = Date.now() - t0;
    expect(closed).toEqual({ code: 1011, reason: 'heartbeat timeout' });
    expect(elapsed).toBeGreaterThanOrEqual(2 * INTERVAL - 100);
    expect(elapsed).toBeLessThan(2 * INTERVAL + 1_000);
  });

  it('healthy clients stay connected over 5 intervals', async () => {
    const r = await startRelay({ heartbeatIntervalMs: INTERVAL });
    relay = r;
    const pings: number[] = [];
    const binary = await connectBinary(r, 'srv-hb-ok');
    const phone = await connectPhone(r, 'srv-hb-ok');
    phone.ws.on('ping', () => pings.push(Date.now()));
    await sleep(5 * INTERVAL + 100);
    expect(binary.closed).toBeUndefined();
    expect(phone.closed).toBeUndefined();
    expect(pings.length).toBeGreaterThanOrEqual(3);
    const id = await phoneConnId(phone, binary);
    binary.send(`{"conn_id":"${id}","frame":{"alive":true}}`);
    expect(await phone.message(1)).toBe('{"alive":true}');
  });
});

// ---- Raw WebSocket over TCP (to send partial frames) ----

interface RawWs {
  socket: Socket;
  /** Bytes received after the 101 response. */
  data(): Buffer;
  ended(): boolean;
}

async function rawUpgrade(port: number, path: string, headers: Record<string, string>): Promise<RawWs> {
  const socket = netConnect({ host: '127.0.0.1', port });
  sockets.push(socket);
  let buf = Buffer.alloc(0);
  let headerDone = false;
  let ended = false;
  socket.on('error', () => {});
  socket.on('close', () => (ended = true));
  socket.on('data', (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    if (!headerDone) {
      const end = buf.indexOf('\r\n\r\n');
      if (end >= 0) {
        const head = buf.subarray(0, end).toString('latin1');
        if (!head.startsWith('HTTP/1.1 101')) throw new Error(`upgrade refused: ${head}`);
        headerDone = true;
        buf = buf.subarray(end + 4);
      }
    }
  });
  await withTimeout(new Promise<void>((resolve) => socket.once('connect', () => resolve())), 3_000, 'TCP connect');
  const lines = [
    `GET ${path} HTTP/1.1`,
    `Host: 127.0.0.1:${port}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version: 13',
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    '',
    '',
  ];
  socket.write(lines.join('\r\n'));
  await waitFor(() => headerDone || ended, 3_000, '101 response');
  if (!headerDone) throw new Error('connection closed before the 101');
  return { socket, data: () => (headerDone ? buf : Buffer.alloc(0)), ended: () => ended };
}

/** A masked client frame: `announcedLength` is what the header claims (more than is sent, to stall). */
function maskedFrame(fin: boolean, opcode: number, announcedLength: number, payload: Buffer): Buffer {
  return clientFrame(opcode, payload, { fin, announced: announcedLength });
}

/** The first server close frame in `data`, if complete. */
function parseCloseFrame(data: Buffer): { code: number; reason: string } | undefined {
  return closeOf(parseServerFrames(data).find((f) => f.opcode === 0x8));
}

describe('per-message read deadline', () => {
  const DEADLINE = 300;
  const SLACK = 1_500;

  /** Waits (without answering anything) until the relay sent a close frame and dropped TCP, or 8 s
   * passed; returns when each happened, relative to t0. */
  async function observeClose(ws: RawWs, t0: number): Promise<{ frameMs?: number; endMs?: number }> {
    const seen: { frameMs?: number; endMs?: number } = {};
    await waitFor(
      () => {
        if (seen.frameMs === undefined && parseCloseFrame(ws.data()) !== undefined) seen.frameMs = Date.now() - t0;
        if (seen.endMs === undefined && ws.ended()) seen.endMs = Date.now() - t0;
        return seen.endMs !== undefined || Date.now() - t0 > 8_000;
      },
      10_000,
      'relay closes the stalled connection',
      5,
    );
    return seen;
  }

  it('binary: a frame header announcing 100 bytes followed by only 10 -> 1008 "message read timeout" and the socket closes within the deadline', async () => {
    const r = await startRelay({ messageReadTimeoutMs: DEADLINE });
    relay = r;
    const ws = await rawUpgrade(r.port, '/v1/server', binaryHeaders('srv-rd'));
    await waitFor(() => r.relay.registry.binaryFor('srv-rd'), 3_000, 'claim');
    const t0 = Date.now();
    ws.socket.write(maskedFrame(true, 0x1, 100, Buffer.from('{"conn_id"')));
    const released = waitFor(
      () => logsOf(r, 'server_released').length === 1 && Date.now() - t0,
      10_000,
      'server_released',
    );
    const seen = await observeClose(ws, t0);
    expect(parseCloseFrame(ws.data())).toEqual({ code: 1008, reason: 'message read timeout' });
    expect(seen.frameMs).toBeGreaterThanOrEqual(DEADLINE - 50);
    expect(seen.frameMs).toBeLessThan(DEADLINE + SLACK);
    // The peer is stuck mid-frame and can never answer the close: the connection must be gone
    // (and the binary released) at the deadline, not after the close-handshake wait.
    expect.soft(seen.endMs ?? Infinity, 'ms until the relay closed the TCP connection').toBeLessThan(DEADLINE + SLACK);
    expect.soft(await released, 'ms until server_released').toBeLessThan(DEADLINE + SLACK);
  });

  it('phone: a stalled partial frame -> 1008, socket closed and the binary notified (close_code 1008) within the deadline', async () => {
    const r = await startRelay({ messageReadTimeoutMs: DEADLINE });
    relay = r;
    const binary = await connectBinary(r, 'srv-rd-p');
    const ws = await rawUpgrade(r.port, '/v1/client', phoneHeaders('srv-rd-p'));
    await waitFor(() => r.relay.metrics.phonesSinceBoot === 1, 3_000, 'registration');
    const t0 = Date.now();
    ws.socket.write(maskedFrame(true, 0x1, 100, Buffer.from('{"a":"bbbb')));
    const notified = waitFor(() => binary.messages.length >= 1 && Date.now() - t0, 10_000, 'close notice');
    const seen = await observeClose(ws, t0);
    expect(parseCloseFrame(ws.data())).toEqual({ code: 1008, reason: 'message read timeout' });
    expect(seen.frameMs).toBeGreaterThanOrEqual(DEADLINE - 50);
    expect(seen.frameMs).toBeLessThan(DEADLINE + SLACK);
    const noticeMs = await notified;
    expect(binary.messages[0]).toMatch(/^\{"conn_id":"client-srv-rd-p-[0-9a-f]{8}","close_code":1008\}$/);
    expect(binary.closed).toBeUndefined();
    expect.soft(seen.endMs ?? Infinity, 'ms until the relay closed the TCP connection').toBeLessThan(DEADLINE + SLACK);
    expect.soft(noticeMs, 'ms until the close notice reached the binary').toBeLessThan(DEADLINE + SLACK);
  });

  it('a fragmented message whose continuation never arrives gets 1008 within the deadline; answering the close ends it', async () => {
    const r = await startRelay({ messageReadTimeoutMs: DEADLINE });
    relay = r;
    const ws = await rawUpgrade(r.port, '/v1/server', binaryHeaders('srv-rd-f'));
    await waitFor(() => r.relay.registry.binaryFor('srv-rd-f'), 3_000, 'claim');
    const t0 = Date.now();
    const part = Buffer.from('{"conn_id":"x",');
    ws.socket.write(maskedFrame(false, 0x1, part.length, part)); // complete first fragment, FIN=0
    await waitFor(() => parseCloseFrame(ws.data()), DEADLINE + SLACK + 500, 'close frame');
    const elapsed = Date.now() - t0;
    expect(elapsed).toBeGreaterThanOrEqual(DEADLINE - 50);
    expect(elapsed).toBeLessThan(DEADLINE + SLACK);
    expect(parseCloseFrame(ws.data())).toEqual({ code: 1008, reason: 'message read timeout' });
    // Between frames the peer can answer; then the relay drops TCP and releases the slot.
    const body = Buffer.from([0x03, 0xf0]); // 1008
    ws.socket.write(maskedFrame(true, 0x8, body.length, body));
    await waitFor(() => ws.ended(), 3_000, 'socket closed after the close handshake');
    await waitFor(() => logsOf(r, 'server_released').length === 1, 3_000, 'server_released');
  });

  it('an idle connection with no partial message is not closed by the read deadline', async () => {
    const r = await startRelay({ messageReadTimeoutMs: DEADLINE });
    relay = r;
    const binary = await connectBinary(r, 'srv-idle');
    const phone = await connectPhone(r, 'srv-idle');
    const id = await phoneConnId(phone, binary); // one complete message each way before idling
    const raw = await rawUpgrade(r.port, '/v1/server', binaryHeaders('srv-idle-raw'));
    const complete = Buffer.from('{"conn_id":"client-srv-idle-raw-00000000","frame":1}');
    raw.socket.write(maskedFrame(true, 0x1, complete.length, complete)); // a whole message, then silence
    await sleep(4 * DEADLINE);
    expect(binary.closed).toBeUndefined();
    expect(phone.closed).toBeUndefined();
    expect(raw.ended()).toBe(false);
    expect(parseCloseFrame(raw.data())).toBeUndefined();
    binary.send(`{"conn_id":"${id}","frame":{"still":"here"}}`);
    expect(await phone.message(1)).toBe('{"still":"here"}');
  });
});

describe('phone -> binary back-pressure', () => {
  it("a binary that stops reading back-pressures its own phones, while another binary's phone keeps flowing", async () => {
    const r = await startRelay();
    relay = r;
    const stuck = await connectBinary(r, 'srv-stuck');
    const p1 = await connectPhone(r, 'srv-stuck');
    await phoneConnId(p1, stuck);
    const flowing = await connectBinary(r, 'srv-flow');
    const p2 = await connectPhone(r, 'srv-flow');
    const id2 = await phoneConnId(p2, flowing);

    underlying(stuck).pause();
    const blob = 'y'.repeat(60 * 1024);
    let sent = 0;
    // Keep sending until p1's own socket backs up: the relay stopped reading it. Bounded well below
    // the relay's 10 s send deadline towards the stuck binary.
    const deadline = Date.now() + 5_000;
    while (p1.ws.bufferedAmount < 1 << 20 && sent < 800 && Date.now() < deadline) {
      for (let k = 0; k < 8; k++) p1.send(`{"i":${sent++},"blob":"${blob}"}`);
      await sleep(10);
    }
    expect(p1.ws.bufferedAmount).toBeGreaterThan(0);
    const forwardedWhileStuck = r.relay.metrics.framesPhoneToBinary;
    expect(forwardedWhileStuck).toBeLessThan(2 + sent);

    // The other server-id flows both ways, in order.
    const up: string[] = [];
    const down: string[] = [];
    for (let i = 0; i < 50; i++) {
      p2.send(`{"up":${i}}`);
      up.push(`{"conn_id":"${id2}","frame":{"up":${i}}}`);
      flowing.send(`{"conn_id":"${id2}","frame":{"down":${i}}}`);
      down.push(`{"down":${i}}`);
    }
    await flowing.message(51, 3_000);
    await p2.message(50, 3_000);
    expect(flowing.messages.slice(1)).toEqual(up);
    expect(p2.messages).toEqual(down);
    expect(p1.closed).toBeUndefined();
    expect(stuck.closed).toBeUndefined();

    // Back-pressure, not loss: once the binary reads again it gets every frame, in order.
    underlying(stuck).resume();
    await waitFor(() => stuck.messages.length >= 1 + sent, 15_000, `all ${sent} frames at the stuck binary`);
    expect(stuck.messages).toHaveLength(1 + sent);
    for (let i = 0; i < sent; i++) {
      const m = stuck.messages[1 + i]!;
      expect(m.slice(0, 60)).toMatch(new RegExp(`^\\{"conn_id":"client-srv-stuck-[0-9a-f]{8}","frame":\\{"i":${i},`));
    }
    expect(p1.closed).toBeUndefined();
    expect(stuck.closed).toBeUndefined();
  });
});
