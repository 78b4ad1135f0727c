// Spawning the BUILT daemon (`node dist/src/main.js`) for CLI / end-to-end tests: run it to its
// exit, or start it on free loopback ports and wait until it serves (withDaemon(), which always
// stops it after the test). Every spawn has a hard timeout and is SIGKILLed by `stop()`.

import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach } from 'vitest';
import { httpGet } from './http.js';
import { accepts, freePort } from './ports.js';
import { REPO_ROOT } from './repo.js';
import { waitFor, withTimeout } from './wait.js';

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

/** A daemon that answered 200 on /healthz, on ports chosen for it. */
export interface RunningDaemon {
  d: DaemonHandle;
  port: number;
  metricsPort: number;
  /** http://127.0.0.1:<port> */
  url: string;
  /** ws://127.0.0.1:<port> */
  ws: string;
  /** http://127.0.0.1:<metricsPort>/metrics */
  metrics: string;
}

export interface ReadyOptions {
  /** Added to the cleaned environment (cleanEnv). */
  env?: Record<string, string>;
  /** How long the daemon may take to serve /healthz. */
  readyTimeoutMs?: number;
  /** false: no Prometheus listener (`--metrics-listen ''`); metricsPort is then 0. */
  metricsListener?: boolean;
}

const READY_TIMEOUT_MS = 15_000;

/** Starts the daemon with `--insecure-listen` and `--metrics-listen` on free loopback ports plus
 * `args`, and waits until /healthz answers 200 and the metrics listener (started after the public
 * one) accepts. On failure the daemon is stopped and the error carries its stderr. The caller stops it (withDaemon() does). */
export async function startReadyDaemon(args: string[], options: ReadyOptions = {}): Promise<RunningDaemon> {
  const port = await freePort();
  const metricsPort = options.metricsListener === false ? 0 : await freePort();
  const metricsListen = metricsPort === 0 ? '' : `127.0.0.1:${metricsPort}`;
  const d = startDaemon(
    ['--insecure-listen', `127.0.0.1:${port}`, '--metrics-listen', metricsListen, ...args],
    cleanEnv(options.env),
  );
  let exited = false;
  void d.exited.then(() => (exited = true));
  const url = `http://127.0.0.1:${port}`;
  // Our daemon's /healthz, not another test's server that got the same port after freePort closed
  // it: the relay's body starts with {"status":"ok".
  const healthy = async (): Promise<boolean> => {
    const res = await httpGet(`${url}/healthz`).catch(() => undefined);
    return res?.status === 200 && res.body.startsWith('{"status":"ok"');
  };
  try {
    await waitFor(
      async () => exited || ((await healthy()) && (metricsPort === 0 || (await accepts(metricsPort)))),
      options.readyTimeoutMs ?? READY_TIMEOUT_MS,
      'daemon /healthz',
      25,
    );
    if (exited) throw new Error('the daemon exited');
  } catch (err) {
    await d.stop();
    throw new Error(`daemon did not come up: ${String(err)}\n${d.stderr()}`);
  }
  return {
    d,
    port,
    metricsPort,
    url,
    ws: `ws://127.0.0.1:${port}`,
    metrics: `http://127.0.0.1:${metricsPort}/metrics`,
  };
}

/** Call once at the top of a test file: `start()` runs startReadyDaemon and every daemon it
 * started is SIGKILLed (if still running) after each test, also when the test failed. */
export function withDaemon(): { start(args: string[], options?: ReadyOptions): Promise<RunningDaemon> } {
  const running: DaemonHandle[] = [];
  afterEach(async () => {
    await Promise.all(running.splice(0).map((d) => d.stop()));
  });
  return {
    async start(args, options) {
      const run = await startReadyDaemon(args, options);
      running.push(run.d);
      return run;
    },
  };
}
