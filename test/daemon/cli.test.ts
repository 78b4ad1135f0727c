// The BUILT daemon (`node dist/src/main.js`) end to end: flags, boot refusals, exit codes, listener
// failure, graceful shutdown, /metrics content type and static-TLS mode (docs/operations.md, "Flags";
// docs/operations.md, "Signals, exit codes and the drain"; docs/operations.md, "Logs";
// docs/decisions.md). Build first (`npx tsc -p tsconfig.json`; `npm test` does it).

import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  accepts,
  cleanEnv,
  DAEMON_MAIN,
  freePort,
  REPO_ROOT,
  runDaemon,
  startDaemon,
  type DaemonHandle,
} from '../helpers/daemon.js';
import { binaryHeaders, httpGet, phoneHeaders, TestClient } from '../helpers/relay.js';
import { waitFor, withTimeout } from '../helpers/wait.js';

const PKG_VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

beforeAll(() => {
  if (!existsSync(DAEMON_MAIN)) throw new Error(`${DAEMON_MAIN} is missing: run npx tsc -p tsconfig.json first`);
});

function lines(text: string): string[] {
  return text.split('\n').filter((l) => l !== '');
}

/** A text-format log line's msg, as the logger writes it (quoted when it has spaces). */
function textMsg(event: string): string {
  return /[\s="\\]/.test(event) ? `msg=${JSON.stringify(event)}` : `msg=${event}`;
}

describe('flags', () => {
  it('--version prints the package.json version and exits 0', async () => {
    const res = await runDaemon(['--version']);
    expect(res.code).toBe(0);
    expect(res.stdout).toBe(`${PKG_VERSION}\n`);
    expect(res.stderr).toBe('');
  });

  it('--help exits 0 and prints usage on stdout', async () => {
    const res = await runDaemon(['--help']);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('--insecure-listen');
    expect(res.stdout).toContain('--grace-period');
    expect(res.stderr).toBe('');
  });
});

const FCM_SECRET = '{"type":"service_account","private_key":"SECRET-MARKER"}';

interface RefusalCase {
  name: string;
  args: string[];
  env?: Record<string, string>;
  event: string;
  /** Extra text the single line must contain. */
  contains?: string[];
}

const REFUSALS: RefusalCase[] = [
  { name: 'no flags', args: [], event: 'refusing to start: no listener mode' },
  {
    name: 'unknown flag',
    args: ['--insecure-listen', '127.0.0.1:1', '--bogus'],
    event: 'refusing to start: invalid command line',
    contains: ['bogus'],
  },
  {
    name: '--max-connections 0',
    args: ['--insecure-listen', '127.0.0.1:1', '--max-connections', '0'],
    event: 'refusing to start: invalid flag value',
    contains: ['--max-connections'],
  },
  {
    name: '--grace-period abc',
    args: ['--insecure-listen', '127.0.0.1:1', '--grace-period', 'abc'],
    event: 'refusing to start: invalid flag value',
    contains: ['--grace-period', 'value=abc'],
  },
  {
    name: '--metrics-listen localhost:9090',
    args: ['--insecure-listen', '127.0.0.1:1', '--metrics-listen', 'localhost:9090'],
    event: 'refusing to start: invalid --metrics-listen address',
    contains: ['value=localhost:9090'],
  },
  {
    name: '--metrics-listen 0.0.0.0:9090',
    args: ['--insecure-listen', '127.0.0.1:1', '--metrics-listen', '0.0.0.0:9090'],
    event: 'refusing to start: invalid --metrics-listen address',
    contains: ['value=0.0.0.0:9090'],
  },
  {
    name: '--metrics-listen 127.0.0.1:0',
    args: ['--insecure-listen', '127.0.0.1:1', '--metrics-listen', '127.0.0.1:0'],
    event: 'refusing to start: invalid --metrics-listen address',
    contains: ['value=127.0.0.1:0'],
  },
  {
    name: '--insecure-listen with --https-listen',
    args: ['--insecure-listen', '127.0.0.1:1', '--https-listen', ':8443'],
    event: 'refusing to start: conflicting flags',
    contains: ['--https-listen'],
  },
  {
    name: '--insecure-listen with --domain',
    args: ['--insecure-listen', '127.0.0.1:1', '--domain', 'x'],
    event: 'refusing to start: conflicting flags',
    contains: ['--domain'],
  },
  {
    name: '--insecure-listen with --https-proxy-protocol',
    args: ['--insecure-listen', '127.0.0.1:1', '--https-proxy-protocol'],
    event: 'refusing to start: conflicting flags',
    contains: ['--https-proxy-protocol'],
  },
  {
    name: '--insecure-listen with --http-listen',
    args: ['--insecure-listen', '127.0.0.1:1', '--http-listen', ':80'],
    event: 'refusing to start: conflicting flags',
    contains: ['--http-listen'],
  },
  {
    name: '--insecure-listen with --acme-directory',
    args: ['--insecure-listen', '127.0.0.1:1', '--acme-directory', 'https://ca.example/dir'],
    event: 'refusing to start: conflicting flags',
    contains: ['--acme-directory'],
  },
  {
    name: '--domain with --tls-cert/--tls-key',
    args: ['--domain', 'relay.example.com', '--tls-cert', 'c', '--tls-key', 'k'],
    event: 'refusing to start: conflicting flags',
    contains: ['--domain'],
  },
  {
    name: '--tls-cert/--tls-key with --https-proxy-protocol',
    args: ['--tls-cert', 'c', '--tls-key', 'k', '--https-proxy-protocol'],
    event: 'refusing to start: conflicting flags',
    contains: ['--https-proxy-protocol'],
  },
  {
    name: '--domain=""',
    args: ['--domain='],
    event: 'refusing to start: invalid flag value',
    contains: ['flag=--domain'],
  },
  {
    name: '--domain with an IP address',
    args: ['--domain', '203.0.113.1'],
    event: 'refusing to start: invalid flag value',
    contains: ['flag=--domain', 'value=203.0.113.1'],
  },
  {
    name: '--domain with an http:// --acme-directory',
    args: ['--domain', 'relay.example.com', '--acme-directory', 'http://ca.example/dir'],
    event: 'refusing to start: invalid flag value',
    contains: ['flag=--acme-directory'],
  },
  {
    name: '--domain with --https-listen port 0',
    args: ['--domain', 'relay.example.com', '--https-listen', '127.0.0.1:0'],
    event: 'refusing to start: invalid listener address',
    contains: ['flag=--https-listen'],
  },
  {
    name: '--domain with an out-of-range --http-listen port',
    args: ['--domain', 'relay.example.com', '--http-listen', '127.0.0.1:65536'],
    event: 'refusing to start: invalid listener address',
    contains: ['flag=--http-listen'],
  },
  {
    name: 'PYRYCODE_RELAY_PRODUCTION=true',
    args: ['--insecure-listen', '127.0.0.1:1'],
    env: { PYRYCODE_RELAY_PRODUCTION: 'true' },
    event: 'refusing to start: invalid env-var config',
    contains: ['env_var=PYRYCODE_RELAY_PRODUCTION', 'malformed-value'],
  },
  {
    name: 'PYRYCODE_RELAY_PRODUCTION=1 with --insecure-listen',
    args: ['--insecure-listen', '127.0.0.1:1'],
    env: { PYRYCODE_RELAY_PRODUCTION: '1' },
    event: 'refusing to start: --insecure-listen is not allowed in production mode',
  },
  {
    name: 'PYRYCODE_RELAY_FCM_CREDENTIALS not a service-account key',
    args: ['--insecure-listen', '127.0.0.1:1'],
    env: { PYRYCODE_RELAY_FCM_CREDENTIALS: FCM_SECRET },
    event: 'refusing to start: invalid env-var config',
    contains: ['env_var=PYRYCODE_RELAY_FCM_CREDENTIALS', 'reason="not a service-account JSON key (value withheld)"'],
  },
  {
    name: 'FLY_APP_NAME=x',
    args: ['--insecure-listen', '127.0.0.1:1'],
    env: { FLY_APP_NAME: 'x' },
    event: 'refusing to start: multi-instance deploy detected',
  },
  {
    name: 'OTEL_METRICS_EXPORTER=zipkin',
    args: ['--insecure-listen', '127.0.0.1:1'],
    env: { OTEL_METRICS_EXPORTER: 'zipkin' },
    event: 'refusing to start: invalid env-var config',
    contains: ['env_var=OTEL_METRICS_EXPORTER'],
  },
  {
    name: '--tls-cert/--tls-key that do not exist',
    args: ['--tls-cert', '/nonexistent', '--tls-key', '/nonexistent'],
    event: 'refusing to start: cannot read TLS file',
    contains: ['/nonexistent'],
  },
];

describe.concurrent('boot refusals: exit 2 with exactly one stderr line', () => {
  for (const c of REFUSALS) {
    it(c.name, async () => {
      const res = await runDaemon(c.args, cleanEnv(c.env ?? {}));
      expect(res.code).toBe(2);
      expect(res.stdout).toBe('');
      const err = lines(res.stderr);
      expect(err).toHaveLength(1);
      const line = err[0]!;
      expect(line).toMatch(/^time=\S+ level=ERROR /);
      expect(line).toContain(textMsg(c.event));
      for (const text of c.contains ?? []) expect(line).toContain(text);
      expect(res.stderr + res.stdout).not.toContain('SECRET-MARKER');
    });
  }

  it('--log-format json makes the refusal one JSON line', async () => {
    const res = await runDaemon(['--log-format', 'json']);
    expect(res.code).toBe(2);
    expect(res.stdout).toBe('');
    const err = lines(res.stderr);
    expect(err).toHaveLength(1);
    const record = JSON.parse(err[0]!) as Record<string, unknown>;
    expect(record).toMatchObject({ level: 'ERROR', msg: 'refusing to start: no listener mode' });
    expect(typeof record.time).toBe('string');
  });

  it('--log-format json also applies to env refusals (FCM key withheld)', async () => {
    const res = await runDaemon(
      ['--log-format=json', '--insecure-listen', '127.0.0.1:1'],
      cleanEnv({ PYRYCODE_RELAY_FCM_CREDENTIALS: FCM_SECRET }),
    );
    expect(res.code).toBe(2);
    const err = lines(res.stderr);
    expect(err).toHaveLength(1);
    expect(JSON.parse(err[0]!)).toMatchObject({
      level: 'ERROR',
      msg: 'refusing to start: invalid env-var config',
      env_var: 'PYRYCODE_RELAY_FCM_CREDENTIALS',
      reason: 'not a service-account JSON key (value withheld)',
    });
    expect(res.stderr).not.toContain('SECRET-MARKER');
  });
});

describe('listener failure', () => {
  it('port already in use: exits 1 and logs "listener failed"', async () => {
    const blocker: Server = createServer();
    await withTimeout(
      new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve())),
      3_000,
      'blocker listen',
    );
    const port = (blocker.address() as { port: number }).port;
    try {
      const res = await runDaemon([
        '--insecure-listen',
        `127.0.0.1:${port}`,
        '--metrics-listen=',
        '--shutdown-timeout',
        '2s',
      ]);
      expect(res.code).toBe(1);
      const failed = lines(res.stderr).filter((l) => l.includes(textMsg('listener failed')));
      expect(failed).toHaveLength(1);
      expect(failed[0]).toMatch(/level=ERROR/);
      expect(failed[0]).toContain(`addr=127.0.0.1:${port}`);
      expect(failed[0]).toContain('EADDRINUSE');
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
  });

  it('metrics port already in use: exits 1 and logs "listener failed"', async () => {
    const blocker: Server = createServer();
    await withTimeout(
      new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve())),
      3_000,
      'blocker listen',
    );
    const metricsPort = (blocker.address() as { port: number }).port;
    const port = await freePort();
    try {
      const res = await runDaemon([
        '--insecure-listen',
        `127.0.0.1:${port}`,
        '--metrics-listen',
        `127.0.0.1:${metricsPort}`,
        '--shutdown-timeout',
        '2s',
      ]);
      expect(res.code).toBe(1);
      expect(res.stderr).toContain(textMsg('listener failed'));
      expect(res.stderr).toContain(`addr=127.0.0.1:${metricsPort}`);
      expect(await accepts(port)).toBe(false);
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
  });
});

async function startRunning(args: string[]): Promise<{ d: DaemonHandle; port: number; metricsPort: number }> {
  const port = await freePort();
  const metricsPort = await freePort();
  const d = startDaemon([
    '--insecure-listen',
    `127.0.0.1:${port}`,
    '--metrics-listen',
    `127.0.0.1:${metricsPort}`,
    '--shutdown-timeout',
    '2s',
    ...args,
  ]);
  try {
    await d.waitStderr(textMsg('starting'), 10_000);
    await waitFor(
      async () => (await httpGet(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.status === 200,
      10_000,
      'daemon /healthz',
      50,
    );
  } catch (err) {
    await d.stop();
    throw err;
  }
  return { d, port, metricsPort };
}

describe('running daemon', () => {
  it('SIGTERM closes the binary and the phone with 1001 "shutting down", logs the drain and exits 0', async () => {
    const { d, port, metricsPort } = await startRunning([]);
    const clients: TestClient[] = [];
    try {
      const binary = new TestClient(`ws://127.0.0.1:${port}/v1/server`, binaryHeaders('srv-cli'));
      clients.push(binary);
      await binary.open();
      // Claimed once a phone can register (4404 otherwise): retry briefly.
      let phone!: TestClient;
      await waitFor(
        async () => {
          phone = new TestClient(`ws://127.0.0.1:${port}/v1/client`, phoneHeaders('srv-cli'));
          clients.push(phone);
          await phone.open();
          await new Promise((resolve) => setTimeout(resolve, 50));
          return phone.closed === undefined;
        },
        5_000,
        'phone registration',
      );
      phone.send('{"hello":1}');
      const envelope = await binary.message(1);
      expect(envelope).toMatch(/^\{"conn_id":"client-srv-cli-[0-9a-f]{8}","frame":\{"hello":1\}\}$/);
      const connId = (JSON.parse(envelope) as { conn_id: string }).conn_id;
      binary.send(`{"conn_id":"${connId}","frame":{"back":1}}`);
      expect(await phone.message(1)).toBe('{"back":1}');

      // The metrics listener serves the exact Prometheus content type.
      const metrics = await httpGet(`http://127.0.0.1:${metricsPort}/metrics`);
      expect(metrics.status).toBe(200);
      expect(metrics.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
      expect(metrics.body).toContain('pyrycode_relay_frames_forwarded_total{direction="phone_to_binary"} 1');

      d.child.kill('SIGTERM');
      expect(await phone.waitClose(5_000)).toEqual({ code: 1001, reason: 'shutting down' });
      expect(await binary.waitClose(5_000)).toEqual({ code: 1001, reason: 'shutting down' });
      const exit = await d.waitExit(10_000);
      expect(exit).toEqual({ code: 0, signal: null });
      const err = d.stderr();
      expect(err).toContain(textMsg('shutdown signal received; draining'));
      expect(err).toContain(textMsg('shutdown complete'));
      expect(err).not.toContain('drain incomplete');
      expect(await accepts(port)).toBe(false);
      expect(await accepts(metricsPort)).toBe(false);
    } finally {
      for (const c of clients) c.ws.terminate();
      await d.stop();
    }
  });

  it('SIGTERM with no connections exits 0 quickly and frees the port', async () => {
    const { d, port } = await startRunning([]);
    try {
      const t0 = Date.now();
      d.child.kill('SIGTERM');
      const exit = await d.waitExit(5_000);
      expect(exit).toEqual({ code: 0, signal: null });
      expect(Date.now() - t0).toBeLessThan(2_000);
      expect(d.stderr()).toContain(textMsg('shutdown complete'));
      expect(await accepts(port)).toBe(false);
    } finally {
      await d.stop();
    }
  });

  it('a normal run logs only key=value text lines; SIGINT drains and exits 0', async () => {
    const { d } = await startRunning(['--grace-period', '300ms', '--heartbeat-interval', '1s']);
    try {
      d.child.kill('SIGINT');
      expect(await d.waitExit(5_000)).toEqual({ code: 0, signal: null });
      for (const line of lines(d.stderr())) expect(line).toMatch(/^time=\S+ level=(INFO|WARN|ERROR) msg=/);
      expect(d.stderr()).toContain(textMsg('push off: PYRYCODE_RELAY_FCM_CREDENTIALS unset'));
      expect(d.stderr()).toMatch(/msg=starting version=\S+ mode=insecure listen=127\.0\.0\.1:\d+/);
    } finally {
      await d.stop();
    }
  });
});

describe('static TLS mode', () => {
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'relay-tls-'));
    await withTimeout(
      new Promise<void>((resolve, reject) =>
        execFile(
          'openssl',
          [
            'req',
            '-x509',
            '-newkey',
            'rsa:2048',
            '-nodes',
            '-subj',
            '/CN=127.0.0.1',
            '-addext',
            'subjectAltName=IP:127.0.0.1',
            '-days',
            '1',
            '-keyout',
            'key.pem',
            '-out',
            'cert.pem',
          ],
          { cwd: dir },
          (err) => (err ? reject(err) : resolve()),
        ),
      ),
      20_000,
      'openssl self-signed certificate',
    );
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('serves wss:// with --tls-cert/--tls-key/--https-listen: a binary and a phone exchange frames', async () => {
    const port = await freePort();
    const d = startDaemon([
      '--tls-cert',
      join(dir, 'cert.pem'),
      '--tls-key',
      join(dir, 'key.pem'),
      '--https-listen',
      `127.0.0.1:${port}`,
      '--metrics-listen=',
      '--shutdown-timeout',
      '2s',
    ]);
    const clients: TestClient[] = [];
    try {
      await d.waitStderr(textMsg('starting'), 10_000);
      expect(d.stderr()).toMatch(/mode=tls/);
      const ca = readFileSync(join(dir, 'cert.pem'));
      let binary!: TestClient;
      await waitFor(
        async () => {
          binary = new TestClient(`wss://127.0.0.1:${port}/v1/server`, binaryHeaders('srv-tls'), { ca });
          clients.push(binary);
          return binary.open().then(
            () => true,
            () => false,
          );
        },
        10_000,
        'wss binary open',
        100,
      );
      const phone = new TestClient(`wss://127.0.0.1:${port}/v1/client`, phoneHeaders('srv-tls'), { ca });
      clients.push(phone);
      await phone.open();
      phone.send('{ "over" : "tls" }');
      const envelope = await binary.message(1);
      expect(envelope).toMatch(/^\{"conn_id":"client-srv-tls-[0-9a-f]{8}","frame":\{"over":"tls"\}\}$/);
      const connId = (JSON.parse(envelope) as { conn_id: string }).conn_id;
      binary.send(`{"conn_id":"${connId}","frame":{"reply" : 1}}`);
      expect(await phone.message(1)).toBe('{"reply" : 1}');
      // Without the CA the handshake fails (a real certificate check is in place).
      const untrusted = new TestClient(`wss://127.0.0.1:${port}/v1/client`, phoneHeaders('srv-tls'));
      clients.push(untrusted);
      await expect(untrusted.open()).rejects.toThrow();

      d.child.kill('SIGTERM');
      expect(await phone.waitClose(5_000)).toEqual({ code: 1001, reason: 'shutting down' });
      expect(await binary.waitClose(5_000)).toEqual({ code: 1001, reason: 'shutting down' });
      expect(await d.waitExit(10_000)).toEqual({ code: 0, signal: null });
    } finally {
      for (const c of clients) c.ws.terminate();
      await d.stop();
    }
  });
});
