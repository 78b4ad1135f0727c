// What the bench orchestrators (run.ts, throughput-ab.ts) share about their child processes: one
// request/answer over IPC, the CPU a process has used, and the median of repeated figures.

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

/** The middle value (the upper one of an even count). */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}
