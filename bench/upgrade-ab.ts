// Same-run A/B of relay builds on the upgrade path: decides a per-upgrade change without the full
// bench. Each round opens the same connections (binaries, then 16 phones each, 64 handshakes in
// flight, the handshake-only raw client of bench/load.ts) against every target back to back, so
// what else the machine does hits all targets alike; the figure is server CPU per accepted upgrade
// (µs, process.cpuUsage() over IPC), the median over rounds. Loopback only, bounded in time.
//
// Usage: node dist/bench/upgrade-ab.js [--rounds=7] [--connections=2176] [common options]
//          name=path/to/dist ...   e.g. `--bare base=/tmp/base/dist new=dist` (the common options
//          and AB_WRAP: bench/ab.ts; a name starting with "bare" runs that tree's bare ws server).

import { flag, isBare, startAb } from './ab.js';
import { median, serverCpuUs, settle } from './child-process.js';

const rounds = Number(flag('rounds', '7'));
/** Phones and binaries per run (17 a server-id: the binary and its 16 phones). */
const ids = Math.ceil(Number(flag('connections', String(128 * 17))) / 17);

const { load, servers } = await startAb();

const samples = new Map<string, number[]>();
// Rounds 0 and 1 warm every process up (a fresh process pays its JIT on its first few thousand
// handshakes) and are not counted.
const WARMUP_ROUNDS = 2;
for (let round = 1 - WARMUP_ROUNDS; round <= rounds; round++) {
  for (const server of servers) {
    const topology = {
      target: isBare(server.name) ? 'bare' : 'relay',
      port: server.port,
      ids,
      phonesPerId: 16,
    } as const;
    const cpu0 = await serverCpuUs(server.child);
    const run = await load({ cmd: 'connect', topology, concurrency: 64, client: 'raw' });
    const us = ((await serverCpuUs(server.child)) - cpu0) / run.connections!;
    await load({ cmd: 'teardown' });
    await settle(server.child);
    if (round > 0) samples.set(server.name, [...(samples.get(server.name) ?? []), us]);
  }
}

process.stdout.write(`server CPU µs per accepted upgrade, median of ${rounds} interleaved rounds (${ids * 17} each)\n`);
for (const server of servers) {
  const values = samples.get(server.name)!;
  process.stdout.write(
    `${server.name} | ${median(values).toFixed(1)} | ${values.map((v) => v.toFixed(0)).join(' ')}\n`,
  );
}
process.exit(0); // ends every child (above)
