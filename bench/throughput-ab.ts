// Same-run A/B of relay builds on the throughput scenarios: decides a per-frame change without the
// full bench. Each round runs every scenario against every target back to back (interleaved), so
// what else the machine does hits all targets alike; the figure is server CPU per frame (µs, from
// /proc), the median over rounds. Loopback only, bounded in time (each run is warm-up + window).
//
// Usage: node dist/bench/throughput-ab.js [--rounds=5] [--sizes=16384] [--ms=1000] [--dirs=p2b,b2p]
//          [--topologies=1 phone,...] [--rate=N] [--prof=dir] [--node-args=a,b] [--log=dir]
//          [--samples] [--bare] name=path/to/dist ...
// where each path/to/dist is a built tree (the directory holding bench/relay-process.js) with the
// project's node_modules beside it, e.g. `base=/tmp/base/dist new=dist`; a name starting with
// "bare" runs that tree's bare forwarder. --rate offers a fixed N frames/s instead of as many as the
// window allows; --samples prints every round's figure; AB_WRAP (see startNode) runs the servers
// under another command, e.g. strace -c, or a script that adds V8 flags per target name.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuSeconds, median, request } from './child-process.js';
import type { Command } from './load.js';
import { NODE_FLAGS } from '../src/node-flags.js';

const here = dirname(fileURLToPath(import.meta.url));
const flag = (name: string, fallback: string): string =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const rounds = Number(flag('rounds', '5'));
const sizes = flag('sizes', '16384').split(',').map(Number);
const measureMs = Number(flag('ms', '1000'));
/** Offered frames per second (paced); 0: as fast as the window allows. */
const rate = Number(flag('rate', '0'));
const directions = flag('dirs', 'p2b,b2p').split(',') as ('p2b' | 'b2p')[];
const topologyNames = flag('topologies', '')
  .split(',')
  .filter((t) => t !== '');
/** Write a `--cpu-prof` profile of every target into this directory (one subdirectory each). */
const profDir = flag('prof', '');
/** Extra node flags for the servers (comma-separated, e.g. --node-args=--trace-gc), their stdout
 * written to <logdir>/<name>.log when --log=<logdir> is given. */
const nodeArgs = flag('node-args', '')
  .split(',')
  .filter((a) => a !== '');
const logDir = flag('log', '');
const targets = process.argv
  .slice(2)
  .filter((a) => !a.startsWith('--') && a.includes('='))
  .map((a) => ({ name: a.split('=')[0]!, dist: resolve(a.split('=')[1]!) }));
if (process.argv.includes('--bare')) targets.unshift({ name: 'bare', dist: join(here, '..') });
/** A target whose name starts with "bare" runs that tree's bare forwarder (e.g. bare2=dist). */
const isBare = (name: string): boolean => name.startsWith('bare');

const TOPOLOGIES = [
  { name: '1 phone', ids: 1, phonesPerId: 1 },
  { name: '16 phones/1 id', ids: 1, phonesPerId: 16 },
  { name: '200 ids x 4 phones', ids: 200, phonesPerId: 4 },
];
const PIN = cpus().length >= 2 && spawnSync('taskset', ['-c', '0', 'true']).status === 0;

/** Every process this run started, ended with it (also when it fails). */
const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const child of children) child.kill('SIGTERM');
});

/** AB_WRAP='strace -f -c -o /tmp/st-{name}.txt' runs each server under that command ({name}: the
 * target's name), e.g. to count its system calls. */
function startNode(script: string, args: string[], cpu: number, nodeArgs: string[] = [], name = ''): ChildProcess {
  const wrap = name !== '' && process.env.AB_WRAP ? process.env.AB_WRAP.replaceAll('{name}', name).split(' ') : [];
  // Servers run with the daemon's own Node flags (src/node-flags.ts), the load generator without.
  const flags = name !== '' ? NODE_FLAGS : [];
  const argv = [...wrap, process.execPath, ...flags, ...nodeArgs, script, ...args];
  const command = PIN ? ['taskset', '-c', String(cpu), ...argv] : argv;
  const child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  children.push(child);
  return child;
}

function ready(child: ChildProcess, what: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start`)), 15_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      const m = /ready (\d+)/.exec(chunk.toString());
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('message', () => {
      clearTimeout(timer);
      resolve(0);
    });
  });
}

const loadgen = startNode(join(here, 'load.js'), [], 1);
await ready(loadgen, 'load generator');
const load = (command: Command): Promise<Record<string, number>> => request(loadgen, command, 60_000);
const servers = await Promise.all(
  targets.map(async (t) => {
    const script = isBare(t.name)
      ? join(t.dist, 'bench', 'bare-forwarder.js')
      : join(t.dist, 'bench', 'relay-process.js');
    const prof = profDir !== '' ? ['--cpu-prof', `--cpu-prof-dir=${profDir}/${t.name}`] : [];
    const child = startNode(script, isBare(t.name) ? ['0'] : ['0', 'off'], 0, [...prof, ...nodeArgs], t.name);
    if (logDir !== '') child.stdout!.pipe(createWriteStream(join(logDir, `${t.name}.log`)));
    return { ...t, child, port: await ready(child, t.name) };
  }),
);

const samples = new Map<string, Map<string, number[]>>();
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
        },
      });
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
