// What the same-run A/B tools (throughput-ab.ts, upgrade-ab.ts) share: their command line, the
// servers they start (each target a built tree's relay, or bare forwarder for a name starting with
// "bare"), pinned to CPU 0 with the daemon's Node flags, and the load generator on CPU 1. Every
// process started here ends with the tool.
//
// Common options: name=path/to/dist ... (a built tree, the directory holding
// bench/relay-process.js, with the project's node_modules beside it), --bare (the bare forwarder of
// this tree first), --reference (throughput-ab only: the server RELAY_BENCH_REFERENCE_CMD names, e.g. the Go
// reference relay, as the last target "reference"; see child-process.ts), --prof=dir (a
// `--cpu-prof` profile per target), --node-args=a,b (more Node flags for the servers), --log=dir
// (each server's stdout to dir/<name>.log), --metrics (relays with their Prometheus endpoint on,
// as the daemon runs; default off). AB_WRAP='cmd {name}'
// runs each server under that command ({name}: the target's name), e.g. `strace -f -c -o
// /tmp/st-{name}.txt` to count system calls, or a script that adds V8 flags per target.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GLIBC_TUNABLES, NODE_FLAGS } from '../src/node-flags.js';
import { request, startReferenceServer } from './child-process.js';
import type { Command } from './load.js';

const here = dirname(fileURLToPath(import.meta.url));

/** The value of --name=value on the command line, or `fallback`. */
export function flag(name: string, fallback: string): string {
  return process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
}

/** A target whose name starts with "bare" runs its tree's bare forwarder (e.g. bare2=dist). */
export function isBare(name: string): boolean {
  return name.startsWith('bare');
}

export interface AbServer {
  name: string;
  child: ChildProcess;
  port: number;
}

const PIN = cpus().length >= 2 && spawnSync('taskset', ['-c', '0', 'true']).status === 0;

/** Every process this tool started, ended with it (also when it fails). */
const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const child of children) child.kill('SIGTERM');
});

/** Servers (`name` given) run with the daemon's own Node flags, its GLIBC_TUNABLES and AB_WRAP;
 * the load generator runs plain. */
function startNode(script: string, args: string[], cpu: number, nodeArgs: string[] = [], name = ''): ChildProcess {
  const wrap = name !== '' && process.env.AB_WRAP ? process.env.AB_WRAP.replaceAll('{name}', name).split(' ') : [];
  const flags = name !== '' ? NODE_FLAGS : [];
  const argv = [...wrap, process.execPath, ...flags, ...nodeArgs, script, ...args];
  const command = PIN ? ['taskset', '-c', String(cpu), ...argv] : argv;
  const env = name !== '' ? { ...process.env, GLIBC_TUNABLES } : process.env;
  const child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'pipe', 'inherit', 'ipc'], env });
  children.push(child);
  return child;
}

/** Resolves with the port a server printed ("ready <port>"), or 0 when a child said it is ready
 * over IPC (the load generator). */
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

/** Starts the load generator and every target named on the command line. */
export async function startAb(): Promise<{
  load(command: Command): Promise<Record<string, number>>;
  servers: AbServer[];
}> {
  const targets = process.argv
    .slice(2)
    .filter((a) => !a.startsWith('--') && a.includes('='))
    .map((a) => ({ name: a.split('=')[0]!, dist: resolve(a.split('=')[1]!) }));
  if (process.argv.includes('--bare')) targets.unshift({ name: 'bare', dist: join(here, '..') });
  const profDir = flag('prof', '');
  const nodeArgs = flag('node-args', '')
    .split(',')
    .filter((a) => a !== '');
  const logDir = flag('log', '');
  const metrics = process.argv.includes('--metrics') ? '0' : 'off';

  const loadgen = startNode(join(here, 'load.js'), [], 1);
  await ready(loadgen, 'load generator');
  const servers = await Promise.all(
    targets.map(async (t) => {
      const script = join(t.dist, 'bench', isBare(t.name) ? 'bare-forwarder.js' : 'relay-process.js');
      const prof = profDir !== '' ? ['--cpu-prof', `--cpu-prof-dir=${profDir}/${t.name}`] : [];
      const child = startNode(script, isBare(t.name) ? ['0'] : ['0', metrics], 0, [...prof, ...nodeArgs], t.name);
      if (logDir !== '') child.stdout!.pipe(createWriteStream(join(logDir, `${t.name}.log`)));
      return { name: t.name, child, port: await ready(child, t.name) };
    }),
  );
  if (process.argv.includes('--reference')) {
    const reference = await startReferenceServer(PIN);
    if (reference === null) throw new Error('--reference needs RELAY_BENCH_REFERENCE_CMD');
    children.push(reference.child);
    servers.push({ name: 'reference', ...reference });
  }
  return { load: (command) => request(loadgen, command, 60_000), servers };
}
