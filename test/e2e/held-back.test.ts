// Phones held back behind a slow binary (issue #14.7): a phone whose frames back up the binary's
// socket is paused and must be let go once the binary catches up, whatever the last write before
// the drain was (docs/protocol.md, "Backpressure: slow phones and slow binaries"). Here the last
// writes are close notices of other phones (big ones: a server-id that escapes to six bytes per
// character), queued in a later socket write than every held phone's last envelope, so no
// forwarded envelope completes after the socket drained below the low-water mark.

import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  connectBinary,
  connectPhone,
  phoneConnId,
  phoneHeaders,
  type TestClient,
  useRelays,
} from '../helpers/relays.js';
import { clientFrame, RawWs, underlying } from '../helpers/ws-frames.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { figure } from '../helpers/figures.js';
import { MiB, settledHeapAndBuffers } from '../helpers/resources.js';
import {
  BINARY_SEND_HIGH_WATER_BYTES,
  BINARY_SEND_HIGH_WATER_FRAMES,
  BINARY_SEND_LOW_WATER_BYTES,
} from '../../src/session/binary-session.js';

const { boot, track } = useRelays();

// `<` is written as \u003c in a conn_id: a 256-byte id of them makes every close notice ~1.6 KB.
const SERVER_ID = `held${'<'.repeat(252)}`;
const FRAME = `"${'x'.repeat(200 * 1024)}"`;
/** Phones held back at once: together they queue far more than the kernel takes in one wake-up,
 * so the write carrying their envelopes stays in flight while the notices queue behind it. */
const HOLDERS = 8;
/** Close notices queued behind the holders' write: more than the kernel takes in one wake-up
 * (a third of a send buffer that grows to 4 MiB), so they cannot leave together with the
 * holders' envelopes (512 KiB of them did, every time). */
const NOTICE_BYTES = 1.5 * (1 << 20);
/** `{"conn_id":"client-held<<<…-xxxxxxxx","close_code":1000}` with each `<` written as \u003c. */
const NOTICE_LENGTH = '{"conn_id":"client-held'.length + 252 * 6 + '-01234567","close_code":1000}'.length;
/** Phones that leave while the holders are held back, each leaving one notice. They connect before
 * the binary stalls and close together afterwards: the binary's 10 s send deadline runs from the
 * moment its socket stalled. */
const LEAVERS = Math.ceil(NOTICE_BYTES / NOTICE_LENGTH) + 50;

/** Lets a paused socket hand what it has buffered (one kernel read, at most ~64 KiB) to ws; a
 * flowing socket would drain the kernel dozens of reads at a time. */
function readSlice(socket: Socket): void {
  socket.read();
}

interface WritableInternals {
  writing: boolean;
  bufferedRequestCount: number;
}

describe('phones held back behind a slow binary', () => {
  it('all resume when the binary catches up, even when the last writes before the drain were close notices', async () => {
    // A long heartbeat: the binary's socket is paused on purpose, so it cannot answer pings.
    // Room for the holders and the leavers on one server-id.
    const r = await boot({
      heartbeatIntervalMs: 60_000,
      rateLimitBurst: 10_000,
      maxPhonesPerServer: HOLDERS + LEAVERS,
      maxConnections: HOLDERS + LEAVERS + 10,
    });
    const binary = await connectBinary(r, SERVER_ID);
    track(binary);
    const binarySession = r.relay.registry.binaryFor(SERVER_ID)!;
    const holders: { client: TestClient; connId: string; sent: number }[] = [];
    for (let i = 0; i < HOLDERS; i++) {
      const client = await connectPhone(r, SERVER_ID);
      track(client);
      holders.push({ client, connId: await phoneConnId(client, binary), sent: 0 });
    }
    const leavers: TestClient[] = [];
    for (let i = 0; i < LEAVERS; i += 50) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(50, LEAVERS - i) }, () => connectPhone(r, SERVER_ID)),
      );
      leavers.push(...batch);
      for (const c of batch) track(c);
    }
    const session = (connId: string) => r.relay.registry.phoneFor(SERVER_ID, connId)!;
    const allPaused = (): boolean => holders.every((h) => session(h.connId).peer.isPaused);

    // The binary stops reading. The first holder sends until the relay pauses it (kernel buffers
    // first, then the high-water mark), then every other holder sends one frame and is paused too.
    const binarySocket = underlying(binary);
    binarySocket.pause();
    const send = (h: (typeof holders)[number]): void => {
      if (h.sent >= 100) throw new Error('a holder sent 100 frames and was never held back');
      h.client.send(FRAME);
      h.sent++;
    };
    while (!session(holders[0]!.connId).peer.isPaused) {
      send(holders[0]!);
      await sleep(5);
    }
    for (const h of holders.slice(1)) send(h);
    await waitFor(allPaused, 5_000, 'every holder held back');
    expect(binarySession.peer.bufferedAmount).toBeGreaterThan(BINARY_SEND_HIGH_WATER_BYTES);

    // Let the binary read a little at a time until every held envelope is inside the write the
    // relay's socket has in flight and nothing waits behind it: what is queued from now on (the
    // close notices) leaves in a later write than any holder's last envelope.
    const relaySocket = (binarySession.peer.ws as unknown as { _socket: Socket })._socket;
    const relayWrites = (relaySocket as unknown as { _writableState: WritableInternals })._writableState;
    for (let slice = 0; ; slice++) {
      if (slice >= 1_000) throw new Error('never reached: holders paused with only their in-flight write queued');
      for (const h of holders) if (!session(h.connId).peer.isPaused) send(h);
      if (allPaused() && relayWrites.writing && relayWrites.bufferedRequestCount === 0) break;
      readSlice(binarySocket);
      await sleep(5);
    }
    const inFlight = binarySession.peer.bufferedAmount;
    expect(inFlight).toBeGreaterThan(BINARY_SEND_LOW_WATER_BYTES);

    // The other phones leave: their close notices queue behind the in-flight write.
    const t0 = Date.now();
    for (const phone of leavers) phone.close(1000);
    await waitFor(
      () => binarySession.peer.bufferedAmount - inFlight >= LEAVERS * NOTICE_LENGTH,
      10_000,
      `${LEAVERS} close notices queued`,
    );
    const churned = LEAVERS;
    expect(allPaused()).toBe(true);
    expect(relayWrites.writing).toBe(true);
    console.log(`[held-back] ${churned} close notices queued in ${Date.now() - t0} ms`);

    // The binary catches up: every holder is let go, and everything it sent arrives in order,
    // followed by a frame sent after the drain.
    binarySocket.resume();
    await waitFor(() => holders.every((h) => !session(h.connId).peer.isPaused), 5_000, 'every holder resumed');
    for (const h of holders) h.client.send('{"after":true}');
    for (const h of holders) {
      const prefix = `{"conn_id":"${h.connId.replaceAll('<', '\\u003c')}","frame":`;
      const frames = (): string[] =>
        binary.messages.filter((m) => m.startsWith(prefix)).map((m) => m.slice(prefix.length, -1));
      await waitFor(() => frames().length === h.sent + 2, 10_000, `all ${h.sent + 2} frames of ${h.connId}`);
      expect(frames()).toEqual(['{"probe":true}', ...Array<string>(h.sent).fill(FRAME), '{"after":true}']);
      expect(h.client.closed).toBeUndefined();
    }
    expect(binary.messages.filter((m) => m.endsWith('"close_code":1000}'))).toHaveLength(churned);
    expect(binary.closed).toBeUndefined();
  });
});

describe('what a held-back phone had already sent', () => {
  it('messages left in the read being parsed when a phone is held back wait for it, not in the binary queue; all arrive in order afterwards', async () => {
    const PHONES = 8;
    // 4-byte JSON numbers in 10-byte masked frames: 6,500 of them in one 65,000-byte write, which
    // the relay reads in one or two socket reads.
    const PER_PHONE = 6_500;
    const FIRST = 1_000;
    const r = await boot({ heartbeatIntervalMs: 60_000, rateLimitBurst: 1_000 });
    const binary = track(await connectBinary(r, 'overrun'));
    const binarySession = r.relay.registry.binaryFor('overrun')!;
    const filler = track(await connectPhone(r, 'overrun'));
    const fillerId = await phoneConnId(filler, binary);
    const phones: { raw: RawWs; connId: string }[] = [];
    for (let i = 0; i < PHONES; i++) {
      const raw = track(await RawWs.open(r.port, '/v1/client', phoneHeaders('overrun')));
      await waitFor(() => r.relay.metrics.phonesSinceBoot === 2 + i, 3_000, `phone ${i} registration`);
      raw.sendText(`"hello ${i}"`);
      const hello = await waitFor(
        () => binary.messages.find((m) => m.endsWith(`"frame":"hello ${i}"}`)),
        3_000,
        `hello from phone ${i}`,
      );
      phones.push({ raw, connId: (JSON.parse(hello) as { conn_id: string }).conn_id });
    }

    // The binary stops reading; the filler sends 64 KiB frames until the relay holds it back.
    underlying(binary).pause();
    const big = `"${'f'.repeat(64 * 1024)}"`;
    for (let i = 0; !r.relay.registry.phoneFor('overrun', fillerId)!.peer.isPaused; i++) {
      if (i >= 2_000) throw new Error('2,000 x 64 KiB and the filler was never held back');
      filler.send(big);
      await sleep(i < 200 ? 0 : 5);
    }
    const sentBefore = r.relay.metrics.framesReceivedPhoneToBinary;
    const heldBefore = settledHeapAndBuffers();

    // Every other phone sends all its frames in one write.
    for (const { raw } of phones) {
      const frames = Array.from({ length: PER_PHONE }, (_, k) => clientFrame(0x1, Buffer.from(String(FIRST + k))));
      raw.write(Buffer.concat(frames));
    }
    await waitFor(
      () => r.relay.metrics.framesReceivedPhoneToBinary === sentBefore + PHONES * PER_PHONE,
      10_000,
      'the relay to read every phone write',
    );
    // Queued towards the binary: the high-water mark plus one envelope per phone that got through
    // before it was held back. Before: every message of every read, 52,000 envelopes (+25 MiB).
    expect(binarySession.peer.pendingSends).toBeLessThanOrEqual(BINARY_SEND_HIGH_WATER_FRAMES + PHONES + 1);
    const grown = settledHeapAndBuffers() - heldBefore;
    figure(
      'held-back overrun',
      `${PHONES} x ${PER_PHONE} frames read while held back: ${(grown / MiB).toFixed(2)} MiB held`,
    );
    // Before: 13.8 MiB (each a wrapped envelope in a pending socket write); now about 1.8 MiB.
    expect(grown).toBeLessThan(4 * MiB);

    // The binary reads again: every message arrives once, in order, per phone.
    underlying(binary).resume();
    const from = (connId: string): string[] =>
      binary.messages.filter((m) => m.startsWith(`{"conn_id":"${connId}","frame":`));
    await waitFor(
      () => phones.every(({ connId }) => from(connId).length >= 1 + PER_PHONE),
      20_000,
      'every held message at the binary',
    );
    for (const { connId } of phones) {
      const prefix = `{"conn_id":"${connId}","frame":`;
      const got = from(connId).slice(1); // after its hello
      expect(got.length).toBe(PER_PHONE);
      expect(got.every((m, k) => m === `${prefix}${FIRST + k}}`)).toBe(true);
    }
    for (const { raw } of phones) expect(raw.closeFrame()).toBeUndefined();
  });
});
