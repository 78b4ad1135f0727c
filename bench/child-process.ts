// What the bench orchestrators (run.ts and the A/B tools) share about their child processes: one
// request/answer over IPC, the CPU a process has used, waiting until a server holds no
// connection, and the median of repeated figures.

import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

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

/** The middle value (the upper one of an even count). */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}
