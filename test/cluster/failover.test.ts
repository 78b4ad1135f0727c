// Cluster mode when an instance dies or stalls (real nats-server, built daemons): the grace window,
// reclaims and fencing hold cluster-wide (docs/operations.md "Cluster mode", failure table).

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
import { binaryHeaders, phoneConnId, phoneHeaders, TestClient } from '../helpers/relays.js';
import { sleep, waitFor } from '../helpers/wait.js';

const available = natsServerAvailable();
let nats: Nats;
let b: Instance;
let c: Instance;
const extra: Instance[] = [];
const clients: TestClient[] = [];

function track<T extends TestClient>(client: T): T {
  clients.push(client);
  return client;
}

async function home(id: string): Promise<Instance> {
  const instance = await startInstance(id, nats.url);
  extra.push(instance);
  return instance;
}

describe.skipIf(!available)('cluster failover (real nats-server)', () => {
  beforeAll(async () => {
    nats = await startNats();
    [b, c] = await Promise.all([startInstance('b', nats.url), startInstance('c', nats.url)]);
  }, 60_000);

  afterAll(async () => {
    for (const client of clients) client.ws.terminate();
    for (const instance of extra) instance.daemon.child.kill('SIGCONT');
    await stopInstances();
    await nats?.dispose();
  });

  it('SIGKILL of the home, then a reclaim on B within grace: the phones held on C get 4404', async () => {
    const a = await home('a1');
    track(await binaryAt(a, 'f-reclaim'));
    const phone = track(await phoneAt(c, 'f-reclaim'));
    expect(phone.closed).toBeUndefined();
    a.daemon.child.kill('SIGKILL');
    await a.daemon.waitExit(5_000);
    const binary = track(await binaryAt(b, 'f-reclaim'));
    expect(await phone.waitClose()).toEqual({ code: 4404, reason: 'binary reclaimed server-id' });
    // The new home serves a new phone on C.
    const fresh = track(await phoneAt(c, 'f-reclaim'));
    const connId = await phoneConnId(fresh, binary);
    binary.send(`{"conn_id":"${connId}","frame":1}`);
    expect(await fresh.message(1)).toBe('1');
  }, 30_000);

  it('SIGKILL of the home without a reclaim: phones on B and C get 1000 after the grace window, counted once cluster-wide', async () => {
    const before = await sumOf([b, c], 'pyrycode_relay_grace_expiries_total');
    const a = await home('a2');
    track(await binaryAt(a, 'f-expire'));
    const onB = track(await phoneAt(b, 'f-expire'));
    const onC = track(await phoneAt(c, 'f-expire'));
    const killedAt = Date.now();
    a.daemon.child.kill('SIGKILL');
    await a.daemon.waitExit(5_000);
    expect(await onB.waitClose(10_000)).toEqual({ code: 1000, reason: '' });
    expect(await onC.waitClose(10_000)).toEqual({ code: 1000, reason: '' });
    // The lease (3 s) to notice, then the 2 s grace window.
    expect(Date.now() - killedAt).toBeGreaterThanOrEqual(2_000);
    await waitFor(
      async () => (await sumOf([b, c], 'pyrycode_relay_grace_expiries_total')) - before === 1,
      3_000,
      'one grace expiry',
    );
    await sleep(500);
    expect((await sumOf([b, c], 'pyrycode_relay_grace_expiries_total')) - before).toBe(1);
    // The server-id is free again: a claim anywhere is fresh.
    track(await binaryAt(c, 'f-expire'));
  }, 30_000);

  it('SIGSTOP of the home past its lease: C takes over; after SIGCONT the old home fences and delivers no stale frame', async () => {
    const a = await home('a3');
    const oldBinary = track(await binaryAt(a, 'f-stop'));
    const localPhone = track(await phoneAt(a, 'f-stop'));
    const remotePhone = track(await phoneAt(b, 'f-stop'));
    const localId = await phoneConnId(localPhone, oldBinary);
    const remoteId = await phoneConnId(remotePhone, oldBinary);
    a.daemon.child.kill('SIGSTOP');
    await sleep(3_500); // past the 3 s lease
    // Frames the old binary sends while its home is stopped sit in A's socket buffer.
    oldBinary.send(`{"conn_id":"${localId}","frame":"stale-local"}`);
    oldBinary.send(`{"conn_id":"${remoteId}","frame":"stale-remote"}`);
    const newBinary = track(await binaryAt(c, 'f-stop'));
    expect(await remotePhone.waitClose()).toEqual({ code: 4404, reason: 'binary reclaimed server-id' });
    a.daemon.child.kill('SIGCONT');
    const closed = await oldBinary.waitClose(5_000);
    expect([1011, 1012]).toContain(closed.code);
    const localClosed = await localPhone.waitClose(5_000);
    expect([4404, 1012]).toContain(localClosed.code);
    expect(localPhone.messages).toEqual([]);
    expect(remotePhone.messages).toEqual([]);
    const fences =
      (await a.metric('pyrycode_relay_cluster_fences_total{reason="lease_lost"}')) +
      (await a.metric('pyrycode_relay_cluster_fences_total{reason="superseded"}'));
    expect(fences).toBeGreaterThanOrEqual(1);
    expect(newBinary.closed).toBeUndefined();
    // The old home recovers and serves new claims; the new home keeps its slot.
    await waitFor(async () => (await a.metric('pyrycode_relay_cluster_engine_connected')) === 1, 5_000, 'A back');
    const phone = track(await phoneAt(a, 'f-stop'));
    const connId = await phoneConnId(phone, newBinary);
    newBinary.send(`{"conn_id":"${connId}","frame":"fresh"}`);
    expect(await phone.message(1)).toBe('"fresh"');
  }, 40_000);

  it('SIGKILL of an instance holding phones: the home finds them gone (audit), tells their binary 1001 and frees the phone cap', async () => {
    const a = await home('a5');
    const holder = await home('h5');
    const binary = track(await binaryAt(a, 'f-holder'));
    const max = 16;
    const connIds: string[] = [];
    for (let i = 0; i < max; i++) {
      const phone = track(await phoneAt(holder, 'f-holder'));
      connIds.push(await phoneConnId(phone, binary));
    }
    expect(await a.metric('pyrycode_relay_cluster_homed_remote_phones')).toBe(max);
    // The id is full: a 17th phone is refused.
    const full = track(new TestClient(`${b.wsUrl}/v1/client`, phoneHeaders('f-holder')));
    expect(await full.waitClose()).toEqual({ code: 4429, reason: 'too many phones for server-id' });

    holder.daemon.child.kill('SIGKILL');
    await holder.daemon.waitExit(5_000);
    // Two audits (one per lease renewal, every lease / 3 = 1 s here) find the holder gone.
    await waitFor(
      async () => (await a.metric('pyrycode_relay_cluster_homed_remote_phones')) === 0,
      10_000,
      "the home to give up the dead holder's phones",
    );
    for (const connId of connIds) {
      expect(binary.messages.filter((m) => m.startsWith(`{"conn_id":"${connId}","close_code":`))).toEqual([
        `{"conn_id":"${connId}","close_code":1001}`,
      ]);
    }
    expect(await a.metric('pyrycode_relay_cluster_audit_drops_total{side="home"}')).toBe(max);
    expect(binary.closed).toBeUndefined();
    // The cap is free again: phones register on another instance and on the home.
    const again = track(await phoneAt(b, 'f-holder'));
    expect(again.closed).toBeUndefined();
    const atHome = track(await phoneAt(a, 'f-holder'));
    expect(atHome.closed).toBeUndefined();
  }, 40_000);

  it('rolling restart: SIGTERM on the home drains it (1001); the binary reclaims on B within grace; its phones elsewhere get 4404 and the id never left', async () => {
    const a = await home('a4');
    const binary = track(await binaryAt(a, 'f-roll'));
    const onA = track(await phoneAt(a, 'f-roll'));
    const onC = track(await phoneAt(c, 'f-roll'));
    a.daemon.child.kill('SIGTERM');
    expect(await binary.waitClose()).toEqual({ code: 1001, reason: 'shutting down' });
    expect(await onA.waitClose()).toEqual({ code: 1001, reason: 'shutting down' });
    expect((await a.daemon.waitExit(10_000)).code).toBe(0);
    // The binary comes back through the balancer on another instance, within the grace window.
    const again = track(await binaryAt(b, 'f-roll'));
    expect(await onC.waitClose()).toEqual({ code: 4404, reason: 'binary reclaimed server-id' });
    // Nobody else could take the id in between: a second claim is refused.
    const intruder = track(new TestClient(`${c.wsUrl}/v1/server`, binaryHeaders('f-roll')));
    expect(await intruder.waitClose()).toEqual({ code: 4409, reason: 'server-id already claimed' });
    const phone = track(await phoneAt(c, 'f-roll'));
    const connId = await phoneConnId(phone, again);
    again.send(`{"conn_id":"${connId}","frame":2}`);
    expect(await phone.message(1)).toBe('2');
  }, 40_000);
});
