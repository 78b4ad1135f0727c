// Reliability: slow and dead peers (issue #5), the larger and adversarial versions of what
// test/e2e/backpressure.test.ts checks one peer at a time:
// - a full server-id (16 phones) where 4 phones stop reading while the binary floods them: each is
//   closed 1011 "phone backlog full", the relay never pins more than the 4 MiB budget per phone,
//   and the 12 healthy siblings keep receiving in order without stalls;
// - a binary that stops reading while 4 phones flood it: only its own phones are held back, the
//   relay's buffer towards it stays bounded, another server-id flows at full speed, and the stuck
//   binary is eventually dropped so nothing stays pinned;
// - half-open peers (upgrade done, then never read or write again, never answer a ping): dropped
//   by the heartbeat, with the detection and drop times measured;
// - peers that start a message and stall, dribble, or pad with pings: cut by the read deadline.

import { describe, expect, it } from 'vitest';
import type { BinarySession } from '../../src/session/binary-session.js';
import { OUTBOX_BUDGET_BYTES } from '../../src/session/outbox.js';
import type { PhoneSession } from '../../src/session/phone-session.js';
import { figure } from '../helpers/figures.js';
import {
  binaryHeaders,
  connectBinary,
  connectPhone,
  phoneConnId,
  phoneHeaders,
  type TestClient,
  type TestRelay,
  useRelays,
} from '../helpers/relays.js';
import { Sampler } from '../helpers/resources.js';
import { clientFrame, RawWs, underlying } from '../helpers/ws-frames.js';
import { sleep, waitFor } from '../helpers/wait.js';

const { boot, track, defer } = useRelays();

function outboxCharged(r: TestRelay, serverId: string, connId: string): number {
  // The outbox is made on the phone's first frame from the binary: none yet means nothing charged.
  const phone = r.relay.registry.phoneFor(serverId, connId) as unknown as
    | { outbox: { charged: number } | undefined }
    | undefined;
  return phone?.outbox?.charged ?? 0;
}

function stamps(c: TestClient): number[] {
  const t: number[] = [];
  c.ws.on('message', () => t.push(Date.now()));
  return t;
}

function maxGap(times: number[], from: number, to: number): number {
  const inWindow = [from, ...times.filter((t) => t >= from && t <= to), to];
  let gap = 0;
  for (let i = 1; i < inWindow.length; i++) gap = Math.max(gap, inWindow[i]! - inWindow[i - 1]!);
  return gap;
}

describe('phones that stop reading while the binary floods them', () => {
  it('16 phones on one server-id, 4 stop reading: each of the 4 is closed 1011 "phone backlog full" with at most 4 MiB pinned; the 12 others get every frame in order without stalls; the binary stays up', async () => {
    const r = await boot();
    const SID = 'sp-flood';
    const binary = track(await connectBinary(r, SID));
    const phones: { c: TestClient; id: string; t: number[] }[] = [];
    for (let i = 0; i < 16; i++) {
      const c = track(await connectPhone(r, SID));
      const id = await phoneConnId(c, binary);
      phones.push({ c, id, t: stamps(c) });
    }
    const slow = phones.slice(0, 4);
    const healthy = phones.slice(4);
    const pad = 'p'.repeat(900);
    const expected = new Map<string, string[]>(healthy.map((p) => [p.id, []]));
    const sendHealthy = (): void => {
      for (const p of healthy) {
        const list = expected.get(p.id)!;
        const frame = `{"seq":${list.length},"pad":"${pad}"}`;
        list.push(frame);
        binary.send(`{"conn_id":"${p.id}","frame":${frame}}`);
      }
    };
    const drained = (): Promise<unknown> =>
      waitFor(() => binary.ws.bufferedAmount < 256 * 1024, 10_000, 'binary client drained');

    // Baseline: 100 frames to each healthy phone with nobody stalled.
    const b0 = Date.now();
    for (let k = 0; k < 100; k++) {
      sendHealthy();
      if (k % 10 === 9) await drained();
    }
    await waitFor(() => healthy.every((p) => p.c.messages.length >= 100), 10_000, 'baseline delivered');
    const baselineRate = (12 * 100) / ((Date.now() - b0) / 1000);

    // Flood: 64 KiB frames to the 4 stalled phones, interleaved with the healthy stream.
    for (const p of slow) underlying(p.c).pause();
    const big = slow.map((p) => Buffer.from(`{"conn_id":"${p.id}","frame":"${'x'.repeat(64 * 1024)}"}`));
    const sampler = new Sampler(() => ({
      charged: Math.max(...slow.map((p) => outboxCharged(r, SID, p.id))),
      buffered: Math.max(
        0,
        ...slow.map(
          (p) => (r.relay.registry.phoneFor(SID, p.id) as PhoneSession | undefined)?.peer.bufferedAmount ?? 0,
        ),
      ),
    }));
    const failedFor = (id: string): boolean =>
      r.logs.some((l) => l.msg === 'binary_forwarder_phone_enqueue_failed' && l.conn_id === id);
    const f0 = Date.now();
    const healthyBefore = expected.get(healthy[0]!.id)!.length;
    let flooded = 0;
    while (!slow.every((p) => failedFor(p.id)) && flooded < 96 << 20) {
      for (let i = 0; i < 4; i++) {
        for (const b of big) binary.send(b);
        flooded += 4 * big[0]!.length;
        sendHealthy();
      }
      await drained();
    }
    // Keep the healthy stream going a little after the last slow phone gave out.
    for (let k = 0; k < 20; k++) sendHealthy();
    const total = expected.get(healthy[0]!.id)!.length;
    await waitFor(() => healthy.every((p) => p.c.messages.length >= total), 15_000, 'all healthy frames');
    const f1 = Date.now();
    const max = await sampler.stop();
    const floodRate = (12 * (total - healthyBefore)) / ((f1 - f0) / 1000);
    const gaps = healthy.map((p) => maxGap(p.t, f0, f1));

    expect(slow.every((p) => failedFor(p.id))).toBe(true);
    for (const p of healthy) expect(p.c.messages, `healthy ${p.id}`).toEqual(expected.get(p.id));
    for (const p of slow) {
      await waitFor(
        () => binary.messages.includes(`{"conn_id":"${p.id}","close_code":1011}`),
        5_000,
        'close notice 1011',
      );
    }
    expect(max.charged).toBeLessThanOrEqual(OUTBOX_BUDGET_BYTES);
    expect(healthy.every((p) => p.c.closed === undefined)).toBe(true);
    expect(binary.closed).toBeUndefined();
    expect(r.relay.counts()).toEqual({ binaries: 1, phones: 12 });
    figure('slow phones: flooded bytes until all 4 gave out', flooded);
    figure('slow phones: max bytes pinned per stalled phone (budget 4194304)', max.charged);
    figure('slow phones: max bytes buffered in ws per stalled phone', max.buffered);
    figure(
      'slow phones: healthy rate baseline / during flood (frames/s)',
      `${Math.round(baselineRate)} / ${Math.round(floodRate)}`,
    );
    figure('slow phones: longest gap a healthy sibling saw during the flood (ms)', Math.max(...gaps));
    // Siblings are never stalled behind the slow phones (the reference's 10 s send deadline would
    // show up here as a multi-second gap), and keep a rate of the same order as without them.
    expect(Math.max(...gaps)).toBeLessThan(2_000);
    expect(floodRate).toBeGreaterThan(baselineRate * 0.1);

    // The relay's close frame is 1011 "phone backlog full" when it reaches the client.
    for (const p of slow) underlying(p.c).resume();
    for (const p of slow) {
      const closed = await p.c.waitClose(10_000);
      if (closed.code !== 1006) expect(closed).toEqual({ code: 1011, reason: 'phone backlog full' });
    }
  }, 60_000);
});

describe('a binary that stops reading', () => {
  it('holds back only its own 4 flooding phones with a bounded buffer; another server-id flows at full speed; the stuck binary is dropped (send deadline or heartbeat) and everything it pinned is released', async () => {
    const r = await boot({ gracePeriodMs: 500 });
    const stuck = track(await connectBinary(r, 'sp-stuck'));
    const mine: { c: TestClient; id: string }[] = [];
    for (let i = 0; i < 4; i++) {
      const c = track(await connectPhone(r, 'sp-stuck'));
      mine.push({ c, id: await phoneConnId(c, stuck) });
    }
    const free = track(await connectBinary(r, 'sp-free'));
    const others: { c: TestClient; id: string }[] = [];
    for (let i = 0; i < 4; i++) {
      const c = track(await connectPhone(r, 'sp-free'));
      others.push({ c, id: await phoneConnId(c, free) });
    }
    const session = r.relay.registry.binaryFor('sp-stuck') as BinarySession;

    /** One round trip on every free phone; returns ms. */
    const exchange = async (tag: number): Promise<number> => {
      const t0 = Date.now();
      const nFree = free.messages.length;
      const counts = others.map((o) => o.c.messages.length);
      for (const o of others) {
        for (let k = 0; k < 25; k++) {
          o.c.send(`{"up":${tag},"k":${k}}`);
          free.send(`{"conn_id":"${o.id}","frame":{"down":${tag},"k":${k}}}`);
        }
      }
      await waitFor(
        () => free.messages.length >= nFree + 100 && others.every((o, i) => o.c.messages.length >= counts[i]! + 25),
        10_000,
        'free round trip',
      );
      return Date.now() - t0;
    };
    const baselineMs = await exchange(0);

    underlying(stuck).pause();
    const stallAt = Date.now();
    const sampler = new Sampler(() => ({ buffered: session.peer.bufferedAmount }));
    const blob = 'y'.repeat(60 * 1024);
    const sent = [0, 0, 0, 0];
    // Flood for 3 s from all 4 phones, bounded by each phone's own client buffer.
    while (Date.now() - stallAt < 3_000) {
      mine.forEach((p, i) => {
        if (p.c.ws.bufferedAmount < 2 << 20) p.c.send(`{"i":${sent[i]!++},"blob":"${blob}"}`);
      });
      await sleep(5);
    }
    const duringMs = await exchange(1);
    const heldBack = mine.map((p) => p.c.ws.bufferedAmount);
    const forwardedWhileStuck = r.relay.metrics.framesPhoneToBinary;
    figure('stuck binary: free server-id 200-frame round trip before / during (ms)', `${baselineMs} / ${duringMs}`);
    figure('stuck binary: frames each flooding phone queued (sent)', sent);
    figure('stuck binary: bytes held back in the phones own clients', heldBack);
    expect(duringMs).toBeLessThan(Math.max(2_000, baselineMs * 10));
    expect(heldBack.every((b) => b > 0)).toBe(true);
    expect(mine.every((p) => p.c.closed === undefined)).toBe(true);
    expect(others.every((o) => o.c.closed === undefined)).toBe(true);

    // The stuck binary is dropped: its heartbeat (5 s here, 2 intervals) or its 10 s send deadline.
    await waitFor(
      () => r.logs.some((l) => l.msg === 'server_released' && l.server_id === 'sp-stuck'),
      25_000,
      'stuck binary released',
      50,
    );
    const droppedAfter = Date.now() - stallAt;
    const max = await sampler.stop();
    figure('stuck binary: dropped after (ms)', droppedAfter);
    figure('stuck binary: max bytes the relay buffered towards it', max.buffered);
    // High water 512 KiB + at most one in-flight envelope per phone (each <= 256 KiB).
    expect(max.buffered).toBeLessThanOrEqual(512 * 1024 + 4 * 256 * 1024);
    expect(droppedAfter).toBeLessThan(16_000 + 1_500);
    expect(forwardedWhileStuck).toBeLessThan(4 + 4 + 200 + sent.reduce((a, b) => a + b, 0));
    // Its phones end too (their sends fail, or the grace window expires); the free ones are untouched.
    for (const p of mine) expect([1000, 1006]).toContain((await p.c.waitClose(10_000)).code);
    expect(others.every((o) => o.c.closed === undefined)).toBe(true);
    expect(await exchange(2)).toBeLessThan(5_000);
    await waitFor(
      () => r.relay.counts().phones === 4 && r.relay.counts().binaries === 1 && r.relay.liveConnections === 5,
      10_000,
      'only the free server-id left',
    );
  }, 60_000);
});

describe('half-open peers (never read, never write, never answer a ping)', () => {
  const INTERVAL = 200;

  it(`heartbeat ${INTERVAL} ms: 5 silent phones and a silent binary are detected within ~2 intervals and dropped after the close-handshake wait; a healthy phone on the same binary is untouched; every slot comes back`, async () => {
    const r = await boot({ heartbeatIntervalMs: INTERVAL, gracePeriodMs: 300 });
    const binary = track(await connectBinary(r, 'sp-ho'));
    const healthy = track(await connectPhone(r, 'sp-ho'));
    const healthyId = await phoneConnId(healthy, binary);
    const silent: RawWs[] = [];
    for (let i = 0; i < 5; i++) {
      silent.push(track(await RawWs.open(r.port, '/v1/client', phoneHeaders('sp-ho'))));
      await waitFor(() => r.relay.counts().phones === 2 + i, 2_000, 'registration');
    }
    const silentBinary = track(await RawWs.open(r.port, '/v1/server', binaryHeaders('sp-ho-bin')));
    await waitFor(() => r.relay.registry.binaryFor('sp-ho-bin'), 2_000, 'claim');
    const binSession = r.relay.registry.binaryFor('sp-ho-bin') as BinarySession;
    const t0 = Date.now();
    for (const s of [...silent, silentBinary]) s.stopReading();

    // Detection: the phones leave the registry (notice 1011 to the binary); the binary's peer closes.
    let phonesDetected = 0;
    let binaryDetected = 0;
    await waitFor(
      () => {
        const now = Date.now() - t0;
        if (phonesDetected === 0 && r.relay.counts().phones === 1) phonesDetected = now;
        if (binaryDetected === 0 && binSession.peer.isClosed) binaryDetected = now;
        return phonesDetected > 0 && binaryDetected > 0;
      },
      5_000,
      'heartbeat detection',
      5,
    );
    await waitFor(
      () => binary.messages.filter((m) => m.includes('"close_code":1011')).length === 5,
      2_000,
      '5 notices',
    );
    // Drop: the relay ends the TCP connections after the close-handshake wait (5 s).
    let dropped = 0;
    await waitFor(
      () => {
        if (
          r.relay.liveConnections === 2 &&
          r.logs.some((l) => l.msg === 'server_released' && l.server_id === 'sp-ho-bin')
        )
          dropped = Date.now() - t0;
        return dropped > 0;
      },
      10_000,
      'TCP dropped',
      10,
    );
    figure(
      `half-open: detected after (ms, heartbeat ${INTERVAL} ms) phones / binary`,
      `${phonesDetected} / ${binaryDetected}`,
    );
    figure('half-open: sockets dropped after (ms)', dropped);
    expect(phonesDetected).toBeLessThanOrEqual(2 * INTERVAL + 600);
    expect(binaryDetected).toBeLessThanOrEqual(2 * INTERVAL + 600);
    expect(dropped).toBeLessThanOrEqual(2 * INTERVAL + 5_000 + 1_500);
    expect(r.relay.cap.used).toBe(2);
    // The healthy phone never noticed.
    binary.send(`{"conn_id":"${healthyId}","frame":{"ok":true}}`);
    expect(await healthy.message(1)).toBe('{"ok":true}');
    expect(healthy.closed).toBeUndefined();
    expect(binary.closed).toBeUndefined();
  }, 20_000);
});

describe('peers that start a message and never finish it (read deadline)', () => {
  const DEADLINE = 300;
  const SLACK = 1_500;

  async function cutAfter(
    ws: RawWs,
    t0: number,
  ): Promise<{ frameMs: number; code: number | undefined; reason: string | undefined }> {
    await waitFor(() => ws.closeFrame() !== undefined || ws.isEnded, DEADLINE + SLACK + 2_000, 'close', 5);
    const frameMs = Date.now() - t0;
    const c = ws.closeFrame();
    return { frameMs, code: c?.code, reason: c?.reason };
  }

  it('a dribbler (1 byte of a 100-byte frame every 50 ms), a ping-padder (open fragment + pings) and a half header are each cut with 1008 at the deadline, not when they stop', async () => {
    const r = await boot({ messageReadTimeoutMs: DEADLINE });
    const binary = track(await connectBinary(r, 'sp-rd'));

    // Dribbler: progress, but the message can never complete in time.
    const dribbler = track(await RawWs.open(r.port, '/v1/client', phoneHeaders('sp-rd')));
    const frame = clientFrame(0x1, Buffer.from(`{"d":"${'z'.repeat(92)}"}`));
    const t1 = Date.now();
    let i = 0;
    const drip = setInterval(() => {
      if (i < frame.length) dribbler.write(frame.subarray(i, ++i));
    }, 50);
    defer(() => clearInterval(drip));

    // Ping-padder: a complete first fragment (FIN=0), then a ping every 100 ms, never the continuation.
    const padder = track(await RawWs.open(r.port, '/v1/client', phoneHeaders('sp-rd')));
    const t2 = Date.now();
    padder.write(clientFrame(0x1, Buffer.from('{"part":'), { fin: false }));
    const pings = setInterval(() => padder.write(clientFrame(0x9, Buffer.from('p'))), 100);
    defer(() => clearInterval(pings));

    // Half header: the first byte of a frame header only.
    const half = track(await RawWs.open(r.port, '/v1/client', phoneHeaders('sp-rd')));
    const t3 = Date.now();
    half.write(Buffer.from([0x81]));

    const [a, b, c] = await Promise.all([cutAfter(dribbler, t1), cutAfter(padder, t2), cutAfter(half, t3)]);
    clearInterval(drip);
    clearInterval(pings);
    figure(
      'read deadline 300 ms: dribbler / ping-padder / half header cut after (ms)',
      `${a.frameMs} / ${b.frameMs} / ${c.frameMs}`,
    );
    for (const x of [a, b, c]) {
      expect(x.code).toBe(1008);
      expect(x.reason).toBe('message read timeout');
      expect(x.frameMs).toBeGreaterThanOrEqual(DEADLINE - 50);
      expect(x.frameMs).toBeLessThan(DEADLINE + SLACK);
    }
    expect(i).toBeLessThan(frame.length); // the dribbler was cut mid-frame
    await waitFor(() => r.relay.counts().phones === 0 && r.relay.liveConnections === 1, 3_000, 'cleaned up');
    await waitFor(
      () => binary.messages.filter((m) => m.includes('"close_code":1008')).length === 3,
      2_000,
      'three 1008 notices',
    );
    expect(binary.closed).toBeUndefined();
  });

  it('10 stalled phones at once do not slow down a healthy phone of the same binary; all 10 are cut and their slots returned', async () => {
    const r = await boot({ messageReadTimeoutMs: DEADLINE });
    const binary = track(await connectBinary(r, 'sp-rd-many'));
    const healthy = track(await connectPhone(r, 'sp-rd-many'));
    const healthyId = await phoneConnId(healthy, binary);
    const stallers: RawWs[] = [];
    for (let k = 0; k < 10; k++) {
      stallers.push(track(await RawWs.open(r.port, '/v1/client', phoneHeaders('sp-rd-many'))));
    }
    await waitFor(() => r.relay.counts().phones === 11, 3_000, 'registrations');
    const t0 = Date.now();
    for (const s of stallers) s.write(clientFrame(0x1, Buffer.from('{"a":'), { announced: 4_000 }));
    // Meanwhile the healthy phone exchanges 200 frames each way.
    const nBin = binary.messages.length;
    for (let k = 0; k < 200; k++) {
      healthy.send(`{"k":${k}}`);
      binary.send(`{"conn_id":"${healthyId}","frame":{"k":${k}}}`);
    }
    await healthy.message(200, 5_000);
    await waitFor(() => binary.messages.length >= nBin + 200, 5_000, 'binary got 200');
    const exchangeMs = Date.now() - t0;
    const results = await Promise.all(stallers.map((s) => cutAfter(s, t0)));
    figure('read deadline: 200-frame exchange next to 10 stallers (ms)', exchangeMs);
    figure('read deadline: 10 stallers cut after (ms, max)', Math.max(...results.map((x) => x.frameMs)));
    for (const x of results) {
      expect(x.code).toBe(1008);
      expect(x.frameMs).toBeLessThan(DEADLINE + SLACK);
    }
    await waitFor(() => r.relay.counts().phones === 1 && r.relay.cap.used === 2, 3_000, 'slots back');
    expect(healthy.closed).toBeUndefined();
  });
  it('a phone streaming for 4 deadlines with every TCP segment ending inside its next message is never cut (each message completes in 40 ms); the message it then leaves unfinished is cut one deadline after its first byte', async () => {
    const r = await boot({ messageReadTimeoutMs: DEADLINE });
    const binary = track(await connectBinary(r, 'sp-rd-stream'));
    const phone = track(await RawWs.open(r.port, '/v1/client', phoneHeaders('sp-rd-stream')));
    phone.socket.setNoDelay(true);
    await waitFor(() => r.relay.counts().phones === 1, 3_000, 'registration');
    const frames = Array.from({ length: 31 }, (_, k) => clientFrame(0x1, Buffer.from(`{"k":${k}}`)));
    // Segment k carries the rest of message k-1 and the first half of message k: the relay never
    // reads up to a message boundary, yet every message completes 40 ms after it started.
    const half = (f: Buffer): number => Math.floor(f.length / 2);
    const nBin = binary.messages.length;
    phone.write(frames[0]!.subarray(0, half(frames[0]!)));
    for (let k = 1; k < frames.length; k++) {
      await sleep(40);
      const prev = frames[k - 1]!;
      phone.write(Buffer.concat([prev.subarray(half(prev)), frames[k]!.subarray(0, half(frames[k]!))]));
    }
    const stalledAt = Date.now(); // message 30 is left half-sent from here on
    expect(phone.closeFrame()).toBeUndefined(); // 1,200 ms of streaming, 4 deadlines
    await waitFor(() => binary.messages.length >= nBin + 30, 3_000, 'binary got messages 0-29');
    const got = binary.messages.slice(nBin).map((m) => JSON.parse(m).frame.k as number);
    expect(got).toEqual(Array.from({ length: 30 }, (_, k) => k));
    const cut = await cutAfter(phone, stalledAt);
    figure('read deadline 300 ms: streaming phone, unfinished last message cut after (ms)', cut.frameMs);
    expect(cut.code).toBe(1008);
    expect(cut.reason).toBe('message read timeout');
    expect(cut.frameMs).toBeGreaterThanOrEqual(DEADLINE - 50);
    expect(cut.frameMs).toBeLessThan(DEADLINE + SLACK);
  });
});
