// The cluster role on a second engine: two in-process Relays share an in-memory hub
// (src/cluster/memory-engine.ts) instead of NATS, with role.ts and the sessions unchanged. Proves
// the Bus/OwnerStore seam holds a second implementation, and runs cluster semantics without a
// server (real ws clients against real Relays on 127.0.0.1).

import { createNoopMeter } from '@opentelemetry/api';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryEngine, MemoryHub } from '../../src/cluster/memory-engine.js';
import { ClusterRoleImpl } from '../../src/cluster/role.js';
import { silentLogger } from '../../src/log.js';
import { ClusterMetrics } from '../../src/metrics/cluster-metrics.js';
import type { ClusterFactory } from '../../src/session/directory.js';
import { connectBinary, connectPhone, phoneConnId, startRelay, type TestRelay } from '../helpers/relays.js';

const LEASE_MS = 3_000;
const relays: TestRelay[] = [];
afterEach(async () => {
  for (const r of relays.splice(0)) await r.close();
});

function memoryCluster(hub: MemoryHub, id: string): ClusterFactory {
  const boot = `${id}-boot`;
  const engine = new MemoryEngine(hub, id, boot, LEASE_MS);
  void engine.renewLease();
  const metrics = new ClusterMetrics(createNoopMeter(), {
    engineConnected: true,
    instancesSeen: 0,
    remotePhones: 0,
    homedRemotePhones: 0,
    inflightBytes: 0,
  });
  return (local, host) =>
    new ClusterRoleImpl(
      {
        instanceId: id,
        boot,
        leaseMs: LEASE_MS,
        bus: engine,
        store: engine,
        metrics,
        log: silentLogger,
        dropEveryN: 0,
      },
      local,
      host,
    );
}

async function twoInstances(): Promise<{ hub: MemoryHub; a: TestRelay; b: TestRelay }> {
  const hub = new MemoryHub();
  const a = await startRelay({ cluster: memoryCluster(hub, 'a') });
  const b = await startRelay({ cluster: memoryCluster(hub, 'b') });
  relays.push(a, b);
  return { hub, a, b };
}

describe('cluster role on the in-memory engine', () => {
  it('binary on A, phone on B: byte-exact both ways; the cap is decided at the home', async () => {
    const { a, b } = await twoInstances();
    const binary = await connectBinary(a, 'mem-1');
    const phone = await connectPhone(b, 'mem-1');
    const connId = await phoneConnId(phone, binary);
    phone.send('[1, {"x" : "<"}]');
    expect(await binary.message(2)).toBe(`{"conn_id":"${connId}","frame":[1,{"x":"\\u003c"}]}`);
    binary.send(`{"conn_id":"${connId}","frame":{"y":2}}`);
    expect(await phone.message(1)).toBe('{"y":2}');
    for (let i = 1; i < 16; i++) await connectPhone(i % 2 === 0 ? a : b, 'mem-1');
    const extra = await connectPhone(b, 'mem-1');
    expect(await extra.waitClose()).toEqual({ code: 4429, reason: 'too many phones for server-id' });
    expect(b.relay.counts().phones).toBe(9);
    expect(a.relay.counts().phones).toBe(7);
  });

  it('the engine goes down: the cross-instance phone gets 1012, the local pair keeps working', async () => {
    const { hub, a, b } = await twoInstances();
    const binary = await connectBinary(a, 'mem-2');
    const local = await connectPhone(a, 'mem-2');
    const remote = await connectPhone(b, 'mem-2');
    const localId = await phoneConnId(local, binary);
    await phoneConnId(remote, binary);
    hub.setUp(false);
    expect(await remote.waitClose()).toEqual({ code: 1012, reason: 'relay link lost' });
    binary.send(`{"conn_id":"${localId}","frame":"ok"}`);
    expect(await local.message(1)).toBe('"ok"');
  });
});
