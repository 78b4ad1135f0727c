// Cluster mode under engine faults, slow peers and lost records (real nats-server, built daemons),
// and the cluster-wide metric invariants on real scrapes of every instance (docs/metrics.md
// "Cluster mode").

import { afterAll, afterEach, describe, expect, it } from 'vitest';
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
  upgradeStatusOf,
} from '../helpers/cluster.js';
import { binaryHeaders, phoneConnId, phoneHeaders, type TestClient } from '../helpers/relays.js';
import { sleep, waitFor } from '../helpers/wait.js';
import type { Socket } from 'node:net';

const available = natsServerAvailable();
const clients: TestClient[] = [];
let nats: Nats | undefined;
let instances: Instance[] = [];

function track<T extends TestClient>(client: T): T {
  clients.push(client);
  return client;
}

afterEach(async () => {
  for (const client of clients.splice(0)) client.ws.terminate();
  await stopInstances(); // every instance started, also any a failed cluster() start left running
  instances = [];
  await nats?.dispose();
  nats = undefined;
});

afterAll(async () => {
  await nats?.dispose();
});

async function cluster(ids: string[], env: Record<string, string> = {}): Promise<Instance[]> {
  nats = await startNats();
  instances = await Promise.all(ids.map((id) => startInstance(id, nats!.url, [], env)));
  return instances;
}

/** Σ link out = Σ link in + Σ link drops, over every instance. */
async function linkBalance(all: Instance[]): Promise<{ out: number; in: number; dropped: number }> {
  const out = await sumOf(all, 'pyrycode_relay_cluster_link_frames_total{direction="out"}');
  const inn = await sumOf(all, 'pyrycode_relay_cluster_link_frames_total{direction="in"}');
  let dropped = 0;
  for (const reason of ['engine_down', 'seq_gap', 'stale_epoch', 'unknown_conn']) {
    dropped += await sumOf(all, `pyrycode_relay_cluster_link_frames_dropped_total{reason="${reason}"}`);
  }
  return { out, in: inn, dropped };
}

describe.skipIf(!available)('cluster faults (real nats-server)', () => {
  it('metric invariants on real scrapes: link frames balance, remote phones = homed remote phones, gauges sum to the sockets', async () => {
    const [a, b, c] = await cluster(['a', 'b', 'c']);
    const binary = track(await binaryAt(a!, 'm-inv'));
    const phones = [
      track(await phoneAt(b!, 'm-inv')),
      track(await phoneAt(c!, 'm-inv')),
      track(await phoneAt(a!, 'm-inv')),
    ];
    const ids: string[] = [];
    for (const phone of phones) ids.push(await phoneConnId(phone, binary));
    for (let i = 0; i < 50; i++) for (const id of ids) binary.send(`{"conn_id":"${id}","frame":${i}}`);
    for (const phone of phones) await phone.message(50, 10_000);
    const all = [a!, b!, c!];
    const balance = await linkBalance(all);
    // Two remote phones: 2 × 50 frames out, plus 2 probe frames towards the binary.
    expect(balance).toEqual({ out: 102, in: 102, dropped: 0 });
    expect(await sumOf(all, 'pyrycode_relay_cluster_remote_phones')).toBe(2);
    expect(await sumOf(all, 'pyrycode_relay_cluster_homed_remote_phones')).toBe(2);
    expect(await sumOf(all, 'pyrycode_relay_connected_phones')).toBe(3);
    expect(await sumOf(all, 'pyrycode_relay_connected_binaries')).toBe(1);
    expect(await sumOf(all, 'pyrycode_relay_frames_forwarded_total{direction="binary_to_phone"}')).toBe(150);
    expect(await sumOf(all, 'pyrycode_relay_cluster_engine_connected')).toBe(3);
    // The instance count is refreshed once per lease (every third renewal), so A may still report
    // the count it read before B and C started: it must reach 3 within two leases.
    await waitFor(
      async () => (await a!.metric('pyrycode_relay_cluster_instances')) === 3,
      10_000,
      'instance a to count 3 instances',
    );
  }, 60_000);

  it('a dropped record (test fault hook) is detected as a gap: the phone gets 1011, seq_gap is counted, nothing after it is delivered', async () => {
    const [a, b] = await cluster(['a', 'b'], { PYRYCODE_RELAY_TEST_CLUSTER_DROP_EVERY_N: '5' });
    const binary = track(await binaryAt(a!, 'g-gap'));
    const phone = track(await phoneAt(b!, 'g-gap'));
    const connId = await phoneConnId(phone, binary);
    for (let i = 1; i <= 8; i++) binary.send(`{"conn_id":"${connId}","frame":${i}}`);
    expect(await phone.waitClose()).toEqual({ code: 1011, reason: 'relay link gap' });
    // Records 1-4 arrive; the 5th was dropped, so the 6th reveals the gap and nothing more is delivered.
    expect(phone.messages).toEqual(['1', '2', '3', '4']);
    expect(
      await b!.metric('pyrycode_relay_cluster_link_frames_dropped_total{reason="seq_gap"}'),
    ).toBeGreaterThanOrEqual(2);
    await sleep(300);
    const balance = await linkBalance([a!, b!]);
    expect(balance.out).toBe(balance.in + balance.dropped);
    expect(binary.messages).toContain(`{"conn_id":"${connId}","close_code":1011}`);
  }, 60_000);

  it('a slow phone on B is closed "phone backlog full" near 4 MiB; its sibling on B gets every frame; the binary on A stays', async () => {
    const [a, b] = await cluster(['a', 'b']);
    const binary = track(await binaryAt(a!, 's-slow'));
    const slow = track(await phoneAt(b!, 's-slow'));
    const healthy = track(await phoneAt(b!, 's-slow'));
    const slowId = await phoneConnId(slow, binary);
    const healthyId = await phoneConnId(healthy, binary);
    (slow.ws as unknown as { _socket: Socket })._socket.pause();
    const big = Buffer.from(`{"conn_id":"${slowId}","frame":"${'x'.repeat(64 * 1024)}"}`);
    const notice = `{"conn_id":"${slowId}","close_code":1011}`;
    let flooded = 0;
    let sent = 0;
    while (!binary.messages.includes(notice) && flooded < 32 << 20) {
      for (let i = 0; i < 8; i++) {
        binary.send(big);
        flooded += big.length;
        binary.send(`{"conn_id":"${healthyId}","frame":${sent++}}`);
      }
      await waitFor(() => binary.ws.bufferedAmount < 256 * 1024, 5_000, 'binary client drained').catch((err) => {
        console.log(
          `flooded ${flooded}\nA:\n${a!.daemon.stderr().slice(-3000)}\nB:\n${b!.daemon.stderr().slice(-3000)}`,
        );
        throw err;
      });
      await sleep(10);
    }
    await waitFor(() => binary.messages.includes(notice), 5_000, 'close notice for the slow phone');
    await b!.daemon.waitStderr(/binary_forwarder_phone_enqueue_failed.*phone backlog full/, 5_000);
    // The 4 MiB budget is decided by the phone's outbox on B, as on one relay. The binary's own
    // flood is not held back by the remote phone (no credit acks yet: docs/operations.md), so
    // only the lower bound of what it sent is meaningful here.
    expect(flooded).toBeGreaterThanOrEqual(4 << 20);
    // Counted when the socket is gone: the paused phone never answers the close frame, so after
    // the 5 s close-handshake wait.
    await waitFor(
      async () =>
        (await b!.metric('pyrycode_relay_connections_closed_total{endpoint="client",reason="backlog_full"}')) === 1,
      10_000,
      'the slow phone counted as backlog_full on B',
      100,
    );
    await waitFor(() => healthy.messages.length >= sent, 10_000, 'every healthy frame');
    expect(healthy.messages).toEqual(Array.from({ length: sent }, (_, i) => String(i)));
    expect(binary.closed).toBeUndefined();
    expect(healthy.closed).toBeUndefined();
  }, 60_000);

  it('a slow binary on A holds back its phone on B (B stops reading it); once the binary reads again every frame arrives in order', async () => {
    const [a, b] = await cluster(['a', 'b']);
    const binary = track(await binaryAt(a!, 'p-back'));
    const phone = track(await phoneAt(b!, 'p-back'));
    const connId = await phoneConnId(phone, binary);
    const socket = (binary.ws as unknown as { _socket: Socket })._socket;
    socket.pause();
    const frame = (i: number): string => `{"i":${i},"pad":"${'y'.repeat(32 * 1024)}"}`;
    let sent = 0;
    // Flood until B stops reading the phone: its client-side buffer grows and stays.
    while (phone.ws.bufferedAmount < 2 << 20 && sent < 2_000) {
      phone.send(frame(sent++));
      await sleep(2);
    }
    expect(phone.ws.bufferedAmount, 'B stopped reading the phone').toBeGreaterThanOrEqual(2 << 20);
    const stuck = phone.ws.bufferedAmount;
    await sleep(500);
    expect(phone.ws.bufferedAmount).toBeGreaterThanOrEqual(stuck - 64 * 1024);
    socket.resume();
    await waitFor(() => binary.messages.length >= sent + 1, 20_000, 'every frame at the binary');
    const indices = binary.messages.slice(1).map((m) => (JSON.parse(m) as { frame: { i: number } }).frame.i);
    expect(indices).toEqual(Array.from({ length: sent }, (_, i) => i));
    expect(binary.messages[1]!.startsWith(`{"conn_id":"${connId}","frame":{"i":0,`)).toBe(true);
    expect(phone.closed).toBeUndefined();
  }, 60_000);

  it('nats-server killed and restarted: 503 for claims and remote phones, 1012 for cross-instance phones, local pairs until the lease, then recovery without restarts', async () => {
    const [a, b] = await cluster(['a', 'b']);
    const binary = track(await binaryAt(a!, 'o-out'));
    const local = track(await phoneAt(a!, 'o-out'));
    const remote = track(await phoneAt(b!, 'o-out'));
    const localId = await phoneConnId(local, binary);
    const remoteId = await phoneConnId(remote, binary);
    await nats!.stop();
    // Cross-instance phone: 1012 on its instance, and its binary gets the notice.
    expect(await remote.waitClose()).toEqual({ code: 1012, reason: 'relay link lost' });
    await waitFor(
      () => binary.messages.includes(`{"conn_id":"${remoteId}","close_code":1012}`),
      3_000,
      'notice of the remote phone',
    );
    // Local pair keeps flowing while the lease holds.
    binary.send(`{"conn_id":"${localId}","frame":"still"}`);
    expect(await local.message(1)).toBe('"still"');
    // New claims and phones of a remote home: 503 before the upgrade.
    expect(await upgradeStatusOf(b!, '/v1/server', binaryHeaders('o-new'))).toBe(503);
    expect(await upgradeStatusOf(b!, '/v1/client', phoneHeaders('o-out'))).toBe(503);
    expect(await b!.metric('pyrycode_relay_cluster_engine_connected')).toBe(0);
    expect(await b!.metric('pyrycode_relay_cluster_refusals_total{endpoint="server",reason="engine_down"}')).toBe(1);
    // Past the lease the home fences itself.
    expect(await binary.waitClose(8_000)).toEqual({ code: 1012, reason: 'relay instance fenced' });
    expect(await local.waitClose(5_000)).toEqual({ code: 1012, reason: 'relay instance fenced' });
    expect(await a!.metric('pyrycode_relay_cluster_fences_total{reason="lease_lost"}')).toBe(1);
    // The engine comes back: both instances reconnect and serve again, without restarts.
    await nats!.start();
    for (const at of [a!, b!]) {
      await waitFor(
        async () => (await at.metric('pyrycode_relay_cluster_engine_connected')) === 1,
        15_000,
        `${at.id} reconnected`,
      );
    }
    for (const at of [a!, b!]) {
      await waitFor(
        async () => (await upgradeStatusOf(at, '/v1/server', binaryHeaders(`o-probe-${at.id}`))) === 101,
        10_000,
        `claims accepted again on ${at.id}`,
        100,
      );
    }
    const again = track(await binaryAt(b!, 'o-out'));
    const phone = track(await phoneAt(a!, 'o-out'));
    const connId = await phoneConnId(phone, again);
    again.send(`{"conn_id":"${connId}","frame":"back"}`);
    expect(await phone.message(1)).toBe('"back"');
    expect(await a!.metric('pyrycode_relay_cluster_engine_reconnects_total')).toBeGreaterThanOrEqual(1);
  }, 90_000);
});
