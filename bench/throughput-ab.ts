// Same-run A/B of relay builds on the throughput scenarios: decides a per-frame change without the
// full bench. Each round runs every scenario against every target back to back (interleaved), so
// what else the machine does hits all targets alike; the figure is server CPU per frame (µs, from
// /proc), the median over rounds. Loopback only, bounded in time (each run is warm-up + window).
//
// Usage: node dist/bench/throughput-ab.js [--rounds=5] [--sizes=16384] [--ms=1000] [--dirs=p2b,b2p]
//          [--topologies=1 phone,...] [--rate=N] [--samples] [common options] name=path/to/dist ...
// e.g. `--bare base=/tmp/base/dist new=dist` (the common options and AB_WRAP: bench/ab.ts).
// --rate offers a fixed N frames/s instead of as many as the window allows; --samples prints every
// round's figure.

import { flag, isBare, startAb } from './ab.js';
import { cpuSeconds, loopbackBlock, median } from './child-process.js';

const rounds = Number(flag('rounds', '5'));
const sizes = flag('sizes', '16384').split(',').map(Number);
const measureMs = Number(flag('ms', '1000'));
/** Offered frames per second (paced); 0: as fast as the window allows. */
const rate = Number(flag('rate', '0'));
const directions = flag('dirs', 'p2b,b2p').split(',') as ('p2b' | 'b2p')[];
const topologyNames = flag('topologies', '')
  .split(',')
  .filter((t) => t !== '');

const TOPOLOGIES = [
  { name: '1 phone', ids: 1, phonesPerId: 1 },
  { name: '16 phones/1 id', ids: 1, phonesPerId: 16 },
  { name: '200 ids x 4 phones', ids: 200, phonesPerId: 4 },
];

const { load, servers } = await startAb();

const samples = new Map<string, Map<string, number[]>>();
let setups = 0;
for (let round = 0; round < rounds; round++) {
  for (const topo of TOPOLOGIES) {
    if (topologyNames.length > 0 && !topologyNames.includes(topo.name)) continue;
    for (const server of servers) {
      await load({
        cmd: 'setup',
        topology: {
          target: isBare(server.name) ? 'bare' : 'relay',
          port: server.port,
          ids: topo.ids,
          phonesPerId: topo.phonesPerId,
          // 64 source addresses of its own per setup (at most 16 connections each, loopbackBlock).
          localAddresses: loopbackBlock(100 + (setups % 150), 64),
        },
      });
      setups++;
      for (const size of sizes) {
        for (const direction of directions) {
          const key = `${direction} ${size} B, ${topo.name}`;
          const cpu0 = cpuSeconds(server.child.pid!);
          const run = await load({
            cmd: 'throughput',
            direction,
            frameBytes: size,
            warmupMs: 200,
            measureMs,
            ...(rate > 0 ? { ratePerSec: rate } : {}),
          });
          const us = ((cpuSeconds(server.child.pid!) - cpu0) * 1e6) / Math.max(1, run.totalFrames!);
          const byTarget = samples.get(key) ?? new Map<string, number[]>();
          byTarget.set(server.name, [...(byTarget.get(server.name) ?? []), us]);
          samples.set(key, byTarget);
        }
      }
      await load({ cmd: 'teardown' });
    }
  }
}

process.stdout.write(`server CPU µs per frame, median of ${rounds} interleaved rounds (${measureMs} ms each)\n`);
process.stdout.write(`scenario | ${servers.map((s) => s.name).join(' | ')}\n`);
for (const [key, byTarget] of samples) {
  const cells = servers.map((s) => median(byTarget.get(s.name)!).toFixed(2));
  process.stdout.write(`${key} | ${cells.join(' | ')}\n`);
  if (process.argv.includes('--samples')) {
    for (const s of servers) {
      const values = byTarget.get(s.name)!.map((v) => v.toFixed(1));
      process.stdout.write(`  ${s.name}: ${values.join(' ')}\n`);
    }
  }
}
process.exit(0); // ends every child (above)
