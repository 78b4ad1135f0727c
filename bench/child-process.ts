// What the bench orchestrators (run.ts and the A/B tools) share about their child processes: one
// request/answer over IPC, the CPU a process has used, waiting until a server holds no
// connection, the median of repeated figures, and the optional external reference server.

import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect as connectTcp } from 'node:net';
import { freePort } from '../test/helpers/ports.js';

/** Sends one IPC message and waits for the child's answer ({ result } or { error }). */
export function request<T>(child: ChildProcess, message: unknown, timeoutMs = 90_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    child.once('message', (reply: unknown) => {
      clearTimeout(timer);
      const r = reply as { result?: T; error?: string };
      if (r.error !== undefined) reject(new Error(r.error));
      else resolve((r.result ?? reply) as T);
    });
    child.send(message as object);
  });
}

/** CPU seconds (user + system, all threads) a process has used, from /proc. */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

/** CPU time a bench server (relay-process.js, bare-forwarder.js) has used so far, µs, all threads
 * (its process.cpuUsage() over IPC: µs resolution, where /proc has 10 ms ticks). */
export async function serverCpuUs(child: ChildProcess): Promise<number> {
  return (await request<{ cpuUs: number }>(child, 'cpu')).cpuUs;
}

/** Waits (at most 10 s) until a bench server holds no connection, so closing one run's
 * connections does not overlap the next run. */
export async function settle(child: ChildProcess): Promise<void> {
  const until = performance.now() + 10_000;
  while ((await request<{ live: number }>(child, 'live')).live > 0 && performance.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** `count` loopback source addresses of block `block` (127.<block>.0.1 onwards, count <= 254) for
 * a load-generator run. A fresh block per run because the Go reference limits upgrade attempts per
 * client IP (20, then one per 6 s) and has no switch for it; every target gets the same. */
export function loopbackBlock(block: number, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `127.${block}.0.${i + 1}`);
}

/** The middle value (the upper one of an even count). */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/**
 * The optional external reference server (e.g. the Go reference relay, built outside the
 * repository): RELAY_BENCH_REFERENCE_CMD is a shell command with `{port}` where its listen port
 * goes; null when it is not set (the default, and in CI). It runs on CPU 0 beside the servers
 * under test when `pin`; its CPU is read from /proc (10 ms ticks). Its log (the Go reference
 * writes a line per connection) goes to /dev/null, as the relay under test logs nothing.
 */
export async function startReferenceServer(pin: boolean): Promise<{ child: ChildProcess; port: number } | null> {
  const template = process.env.RELAY_BENCH_REFERENCE_CMD;
  if (template === undefined || template === '') return null;
  const port = await freePort();
  // `exec` keeps the pid: /proc/<pid>/stat is the server's own CPU.
  const shell = ['sh', '-c', `exec ${template.replaceAll('{port}', String(port))}`];
  const command = pin ? ['taskset', '-c', '0', ...shell] : shell;
  const child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'ignore', 'ignore'] });
  const until = performance.now() + 15_000;
  while (!(await tcpOpen(port))) {
    if (child.exitCode !== null || performance.now() > until) throw new Error('reference server did not start');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { child, port };
}

function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connectTcp({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
