// Same-run A/B of relay builds on the upgrade path: decides a per-upgrade change without the full
// bench. Each round opens the same connections (binaries, then 16 phones each, 64 handshakes in
// flight, the handshake-only raw client of bench/load.ts) against every target back to back, so
// what else the machine does hits all targets alike; the figure is server CPU per accepted upgrade
// (µs, process.cpuUsage() over IPC), the median over rounds. Loopback only, bounded in time.
//
// Usage: node dist/bench/upgrade-ab.js [--rounds=7] [--connections=2176] [--prof=dir] [--bare]
//          name=path/to/dist ...   (a name starting with "bare" runs that tree's bare ws server;
//          AB_WRAP as in throughput-ab.ts)
// where each path/to/dist is a built tree (the directory holding bench/relay-process.js) with the
// project's node_modules beside it, e.g. `base=/tmp/base/dist new=dist`.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, request } from './child-process.js';
import type { Command } from './load.js';
import { NODE_FLAGS } from '../src/node-flags.js';

const here = dirname(fileURLToPath(import.meta.url));
const flag = (name: string, fallback: string): string =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const rounds = Number(flag('rounds', '7'));
/** Phones and binaries per run (17 a server-id: the binary and its 16 phones). */
const ids = Math.ceil(Number(flag('connections', String(128 * 17))) / 17);
/** Write a `--cpu-prof` profile of every target into this directory (one subdirectory each). */
const profDir = flag('prof', '');
const targets = process.argv
  .slice(2)
  .filter((a) => !a.startsWith('--') && a.includes('='))
  .map((a) => ({ name: a.split('=')[0]!, dist: resolve(a.split('=')[1]!) }));
if (process.argv.includes('--bare')) targets.unshift({ name: 'bare', dist: join(here, '..') });
/** A target whose name starts with "bare" runs that tree's bare forwarder (e.g. bare2=dist). */
const isBare = (name: string): boolean => name.startsWith('bare');
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
    const child = startNode(script, isBare(t.name) ? ['0'] : ['0', 'off'], 0, prof, t.name);
    return { ...t, child, port: await ready(child, t.name) };
  }),
);

const cpuUs = async (child: ChildProcess): Promise<number> => (await request<{ cpuUs: number }>(child, 'cpu')).cpuUs;
async function settle(child: ChildProcess): Promise<void> {
  const until = performance.now() + 10_000;
  while ((await request<{ live: number }>(child, 'live')).live > 0 && performance.now() < until) {
    await new Promise((r) => setTimeout(r, 20));
  }
}

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
    const cpu0 = await cpuUs(server.child);
    const run = await load({ cmd: 'connect', topology, concurrency: 64, client: 'raw' });
    const us = ((await cpuUs(server.child)) - cpu0) / run.connections!;
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
