// Cluster mode with the real engine: nats-server with JetStream and three built relay daemons on
// 127.0.0.1 (docs/operations.md "Cluster mode"). Binaries and phones on different instances must
// see exactly what one relay would give them: the same bytes, close codes and reasons.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  binaryAt,
  type Instance,
  type Nats,
  natsServerAvailable,
  phoneAt,
  startInstance,
  startNats,
  stopInstances,
  sumOf,
} from '../helpers/cluster.js';
import { binaryHeaders, phoneConnId, TestClient } from '../helpers/relays.js';
import { sleep, waitFor } from '../helpers/wait.js';

const available = natsServerAvailable();
let nats: Nats;
let a: Instance;
let b: Instance;
let c: Instance;
const clients: TestClient[] = [];

function track<T extends TestClient>(client: T): T {
  clients.push(client);
  return client;
}

describe.skipIf(!available)('cluster routing across instances (real nats-server)', () => {
  beforeAll(async () => {
    nats = await startNats();
    [a, b, c] = await Promise.all([
      startInstance('a', nats.url),
      startInstance('b', nats.url),
      startInstance('c', nats.url),
    ]);
  }, 60_000);

  afterAll(async () => {
    for (const client of clients) client.ws.terminate();
    await stopInstances();
    await nats?.dispose();
  });

  it('binary on A, phone on B: byte-exact envelopes both ways, in order, each frame counted once where written', async () => {
    const binary = track(await binaryAt(a, 'x-route'));
    const phone = track(await phoneAt(b, 'x-route'));
    expect(phone.closed).toBeUndefined();
    const connId = await phoneConnId(phone, binary);
    expect(connId).toMatch(/^client-x-route-[0-9a-f]{8}$/);
    // Phone -> binary: compacted and wrapped exactly like the single-process relay.
    phone.send('{ "a" : [1, 2, "<&>"] }');
    expect(await binary.message(2)).toBe(`{"conn_id":"${connId}","frame":{"a":[1,2,"\\u003c\\u0026\\u003e"]}}`);
    // Both ways, 200 frames each, in order.
    for (let i = 0; i < 200; i++) {
      phone.send(`{"p":${i}}`);
      binary.send(`{"conn_id":"${connId}","frame":{"b":${i}}}`);
    }
    await binary.message(202, 10_000);
    await phone.message(200, 10_000);
    expect(binary.messages.slice(2)).toEqual(
      Array.from({ length: 200 }, (_, i) => `{"conn_id":"${connId}","frame":{"p":${i}}}`),
    );
    expect(phone.messages).toEqual(Array.from({ length: 200 }, (_, i) => `{"b":${i}}`));
    // Frames are counted where the socket is written: P2B on A, B2P on B.
    expect(await a.metric('pyrycode_relay_frames_forwarded_total{direction="phone_to_binary"}')).toBe(202);
    expect(await b.metric('pyrycode_relay_frames_forwarded_total{direction="binary_to_phone"}')).toBe(200);
    expect(await b.metric('pyrycode_relay_frames_received_total{direction="phone_to_binary"}')).toBe(202);
    expect(await a.metric('pyrycode_relay_frames_received_total{direction="binary_to_phone"}')).toBe(200);
    // Gauges count local sockets.
    expect(await a.metric('pyrycode_relay_connected_phones')).toBe(0);
    expect(await b.metric('pyrycode_relay_connected_phones')).toBe(1);
    expect(await b.metric('pyrycode_relay_cluster_remote_phones')).toBe(1);
    expect(await a.metric('pyrycode_relay_cluster_homed_remote_phones')).toBe(1);
    // The phone leaves: the binary gets the close notice the single-process relay sends.
    phone.close(1000);
    expect(await binary.message(203)).toBe(`{"conn_id":"${connId}","close_code":1000}`);
    await waitFor(
      async () => (await a.metric('pyrycode_relay_cluster_homed_remote_phones')) === 0,
      3_000,
      'proxy gone',
    );
  });

  it('phone on A, binary on B: directives keep their order behind the frames', async () => {
    const binary = track(await binaryAt(b, 'x-dir'));
    const phone = track(await phoneAt(a, 'x-dir'));
    const connId = await phoneConnId(phone, binary);
    binary.send(`{"conn_id":"${connId}","frame":{"f":1}}`);
    binary.send(`{"conn_id":"${connId}","frame":{"f":2}}`);
    binary.send(`{"conn_id":"${connId}","close_code":4401,"frame":{"bye":1}}`);
    expect(await phone.waitClose()).toEqual({ code: 4401, reason: '' });
    expect(phone.messages).toEqual(['{"f":1}', '{"f":2}', '{"bye":1}']);
    await sleep(200);
    expect(binary.messages.filter((m) => m.includes('"close_code"'))).toEqual([]);
  });

  it('an unknown server-id gets 4404 on every instance', async () => {
    for (const at of [a, b, c]) {
      const phone = track(await phoneAt(at, 'x-nobody'));
      expect(await phone.waitClose()).toEqual({ code: 4404, reason: 'no server with that id' });
    }
  });

  it('the phone cap holds across instances: 6+5+5 accepted, the 17th gets 4429 wherever it lands', async () => {
    track(await binaryAt(a, 'x-cap'));
    const phones: TestClient[] = [];
    for (const [at, n] of [
      [a, 6],
      [b, 5],
      [c, 5],
    ] as const) {
      for (let i = 0; i < n; i++) phones.push(track(await phoneAt(at, 'x-cap')));
    }
    expect(phones.every((p) => p.closed === undefined)).toBe(true);
    for (const at of [a, b, c]) {
      const extra = track(await phoneAt(at, 'x-cap'));
      expect(await extra.waitClose()).toEqual({ code: 4429, reason: 'too many phones for server-id' });
    }
    expect(await sumOf([a, b, c], 'pyrycode_relay_register_failures_total{kind="phones_at_cap"}')).toBe(3);
  });

  it('a live incumbent on A: a claim on B gets 4409 (probed through A)', async () => {
    const incumbent = track(await binaryAt(a, 'x-live'));
    const challenger = track(new TestClient(`${b.wsUrl}/v1/server`, binaryHeaders('x-live')));
    expect(await challenger.waitClose()).toEqual({ code: 4409, reason: 'server-id already claimed' });
    expect(incumbent.closed).toBeUndefined();
    expect(await b.metric('pyrycode_relay_cluster_probes_total{result="alive"}')).toBeGreaterThanOrEqual(1);
  });

  it('a dead incumbent on A (no pongs): a claim on B takes over; A closes it 1011, phones on C get 4404', async () => {
    const incumbent = track(await binaryAt(a, 'x-dead', { autoPong: false }));
    const phone = track(await phoneAt(c, 'x-dead'));
    expect(phone.closed).toBeUndefined();
    const challenger = track(await binaryAt(b, 'x-dead'));
    expect(await incumbent.waitClose()).toEqual({ code: 1011, reason: 'heartbeat timeout' });
    expect(await phone.waitClose()).toEqual({ code: 4404, reason: 'binary reclaimed server-id' });
    expect(challenger.closed).toBeUndefined();
    // The new home serves new phones.
    const fresh = track(await phoneAt(a, 'x-dead'));
    const connId = await phoneConnId(fresh, challenger);
    challenger.send(`{"conn_id":"${connId}","frame":"hi"}`);
    expect(await fresh.message(1)).toBe('"hi"');
  });

  it('split-claim race: 50 rounds of simultaneous claims on A and B, exactly one accept per round', async () => {
    const before = await sumOf([a, b], 'pyrycode_relay_ws_upgrade_attempts_total{endpoint="server",outcome="accept"}');
    for (let round = 0; round < 50; round++) {
      const id = `x-race-${round}`;
      const pair = [
        track(new TestClient(`${a.wsUrl}/v1/server`, binaryHeaders(id))),
        track(new TestClient(`${b.wsUrl}/v1/server`, binaryHeaders(id))),
      ];
      const closed = await Promise.race([
        Promise.any(pair.map((p) => p.waitClose(8_000).then((c) => ({ p, c })))),
        sleep(8_000).then(() => null),
      ]);
      expect(closed, `round ${round}: one claim must be refused`).not.toBeNull();
      expect(closed!.c).toEqual({ code: 4409, reason: 'server-id already claimed' });
      const winner = pair.find((p) => p !== closed!.p)!;
      await sleep(20);
      expect(winner.closed, `round ${round}: the winner stays`).toBeUndefined();
      for (const p of pair) p.ws.terminate();
    }
    const after = await sumOf([a, b], 'pyrycode_relay_ws_upgrade_attempts_total{endpoint="server",outcome="accept"}');
    expect(after - before).toBe(50);
  }, 120_000);

  it('grace across instances: the binary leaves A; a reclaim on C evicts the phone on B (4404) and counts the reclaim on C', async () => {
    const binary = track(await binaryAt(a, 'x-grace-re'));
    const phone = track(await phoneAt(b, 'x-grace-re'));
    expect(phone.closed).toBeUndefined();
    const reclaimsBefore = await c.metric('pyrycode_relay_grace_reclaims_total');
    binary.close(1000);
    await binary.waitClose();
    await sleep(200);
    expect(phone.closed).toBeUndefined(); // parked through the grace window
    track(await binaryAt(c, 'x-grace-re'));
    expect(await phone.waitClose()).toEqual({ code: 4404, reason: 'binary reclaimed server-id' });
    expect(await c.metric('pyrycode_relay_grace_reclaims_total')).toBe(reclaimsBefore + 1);
  });

  it('grace across instances: without a reclaim the phones on B and C get 1000 and the expiry is counted once (by the home)', async () => {
    // Earlier tests left binaries in their grace windows (2 s): wait until their expiries are in.
    let before = -1;
    await waitFor(
      async () => {
        const now = await sumOf([a, b, c], 'pyrycode_relay_grace_expiries_total');
        const settled = now === before;
        before = now;
        return settled;
      },
      15_000,
      'earlier grace windows to run out',
      2_500,
    );
    const binary = track(await binaryAt(a, 'x-grace-exp'));
    const onB = track(await phoneAt(b, 'x-grace-exp'));
    const onC = track(await phoneAt(c, 'x-grace-exp'));
    binary.close(1000);
    expect(await onB.waitClose(6_000)).toEqual({ code: 1000, reason: '' });
    expect(await onC.waitClose(6_000)).toEqual({ code: 1000, reason: '' });
    await waitFor(
      async () => (await sumOf([a, b, c], 'pyrycode_relay_grace_expiries_total')) === before + 1,
      3_000,
      'the expiry',
    );
    await sleep(300);
    expect(await sumOf([a, b, c], 'pyrycode_relay_grace_expiries_total')).toBe(before + 1);
    // The id is free: a new phone gets 4404 anywhere.
    const late = track(await phoneAt(b, 'x-grace-exp'));
    expect(await late.waitClose()).toEqual({ code: 4404, reason: 'no server with that id' });
  });
});
