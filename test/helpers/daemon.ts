// Spawning the BUILT daemon (`node dist/src/main.js`) for CLI / end-to-end tests. Every spawn has a
// hard timeout and is SIGKILLed by `stop()` (call it in `finally`).

import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, connect as netConnect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { REPO_ROOT } from './repo.js';
import { waitFor, withTimeout } from './wait.js';

export { REPO_ROOT };
export const DAEMON_MAIN = fileURLToPath(new URL('../../dist/src/main.js', import.meta.url));

/** The parent's environment without anything that changes the daemon's configuration. */
export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined) continue;
    if (key.startsWith('PYRYCODE_') || key.startsWith('OTEL_') || key === 'FLY_APP_NAME') continue;
    if (key.startsWith('VITEST') || key === 'NODE_OPTIONS') continue;
    env[key] = value;
  }
  return { ...env, ...extra };
}

export interface DaemonExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface DaemonHandle {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<DaemonExit>;
  /** Resolves with the exit once the process ended, or rejects after `timeoutMs`. */
  waitExit(timeoutMs: number): Promise<DaemonExit>;
  /** Waits until stderr contains `needle`. */
  waitStderr(needle: string | RegExp, timeoutMs: number): Promise<void>;
  /** SIGKILL if still running (idempotent; for finally blocks). */
  stop(): Promise<void>;
}

export function startDaemon(args: string[], env: Record<string, string> = cleanEnv()): DaemonHandle {
  const child = spawn(process.execPath, [DAEMON_MAIN, ...args], {
    cwd: REPO_ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  let done: DaemonExit | undefined;
  const exited = new Promise<DaemonExit>((resolve) => {
    // 'close' (not 'exit') so stdout/stderr are complete.
    child.once('close', (code, signal) => {
      done = { code, signal };
      resolve(done);
    });
    child.once('error', () => {
      done = { code: null, signal: null };
      resolve(done);
    });
  });
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitExit: (timeoutMs) => withTimeout(exited, timeoutMs, `daemon exit (${args.join(' ')})`),
    async waitStderr(needle, timeoutMs) {
      await waitFor(
        () => (typeof needle === 'string' ? err.includes(needle) : needle.test(err)) || done !== undefined,
        timeoutMs,
        `daemon stderr ${String(needle)}`,
      );
      const found = typeof needle === 'string' ? err.includes(needle) : needle.test(err);
      if (!found)
        throw new Error(`daemon exited (${JSON.stringify(done)}) before printing ${String(needle)}; stderr:\n${err}`);
    },
    async stop() {
      if (done !== undefined) return;
      child.kill('SIGKILL');
      await withTimeout(exited, 5_000, 'daemon SIGKILL').catch(() => {});
    },
  };
}

/** Runs the daemon to completion (killed after `timeoutMs`). */
export async function runDaemon(
  args: string[],
  env: Record<string, string> = cleanEnv(),
  timeoutMs = 15_000,
): Promise<DaemonExit & { stdout: string; stderr: string }> {
  const d = startDaemon(args, env);
  try {
    const exit = await d.waitExit(timeoutMs);
    return { ...exit, stdout: d.stdout(), stderr: d.stderr() };
  } finally {
    await d.stop();
  }
}

/** A port that was free a moment ago (bind port 0 on 127.0.0.1, read it, close). */
export function freePort(): Promise<number> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const srv = createServer();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const address = srv.address();
        const port = typeof address === 'object' && address !== null ? address.port : 0;
        srv.close(() => resolve(port));
      });
    }),
    5_000,
    'a free port',
  );
}

/** True if something accepts TCP connections on 127.0.0.1:port. */
export function accepts(port: number, timeoutMs = 2_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(false);
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}
