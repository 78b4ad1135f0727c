// ACME autocert against a real ACME test CA (pebble, one instance for the file).
// * In-process: the AutocertManager with its HTTP-01 handler and TLS options on the ports pebble
//   validates against; HTTP-01 and TLS-ALPN-01 validated for real (no PEBBLE_VA_ALWAYS_VALID),
//   cache reuse, renewal, failures.
// * The built daemon with --domain: certificate over real HTTP-01 on --http-listen, a wss session
//   with it, 421 for a wrong Host on every HTTPS route, 404 on the HTTP-01 port, the cache reused
//   on restart, cache directory permissions tightened or refused, and --https-proxy-protocol with
//   the header's source address as the rate-limit key.
// Build first (`npx tsc -p tsconfig.json`; `npm test` does it).

import { X509Certificate } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer as createHttpServer, request as httpRequest, type Server } from 'node:http';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import { connect as netConnect, createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type PeerCertificate } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ACCOUNT_KEY_FILE, AutocertManager, type AutocertOptions } from '../../src/tls/autocert.js';
import { closeServer, listen } from '../../src/http/listeners.js';
import { createLogger } from '../../src/log.js';
import { PROXY_V2_SIGNATURE } from '../../src/http/proxy-protocol.js';
import { accepts, cleanEnv, DAEMON_MAIN, freePort, startDaemon, type DaemonHandle } from '../helpers/daemon.js';
import { requirePebble, startPebble, type Pebble } from '../helpers/pebble.js';
import { binaryHeaders, httpGet, phoneHeaders, sampleValue, TestClient, type LogLine } from '../helpers/relay.js';
import { sleep, waitFor, withTimeout } from '../helpers/wait.js';

const DOMAIN = 'localhost';
const runPebble = requirePebble();

interface Harness {
  manager: AutocertManager;
  logs: LogLine[];
  /** Requests the HTTP-01 listener saw (path). */
  httpRequests: string[];
  close(): Promise<void>;
}

describe.skipIf(!runPebble)('autocert against pebble', () => {
  let pebble: Pebble;
  let root: string;
  const dirs: string[] = [];
  const open: Harness[] = [];

  beforeAll(async () => {
    pebble = await startPebble({ httpPort: await freePort(), tlsPort: await freePort() });
    root = await pebble.root();
  });
  afterAll(async () => {
    await pebble?.stop();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });
  afterEach(async () => {
    for (const h of open.splice(0)) await h.close();
  });

  function cacheDir(): string {
    const dir = mkdtempSync(join(tmpdir(), 'autocert-cache-'));
    dirs.push(dir);
    return dir;
  }

  /** A manager with its HTTP-01 listener on pebble's httpPort and its HTTPS listener on tlsPort. */
  async function serve(options: Partial<AutocertOptions> & { cacheDir: string }): Promise<Harness> {
    const logs: LogLine[] = [];
    const log = createLogger('json', { write: (line: string) => logs.push(JSON.parse(line) as LogLine) });
    const manager = new AutocertManager({
      domain: DOMAIN,
      directoryUrl: pebble.directoryUrl,
      caCertificates: pebble.listenerCert,
      log,
      ...options,
    });
    const httpRequests: string[] = [];
    const http = createHttpServer((req, res) => {
      httpRequests.push(req.url ?? '');
      manager.httpChallengeHandler(req, res);
    });
    http.on('upgrade', manager.httpUpgradeHandler);
    const https = createHttpsServer(manager.tlsOptions(), (_req, res) =>
      res.end('hello over tls'),
    ) as unknown as Server;
    await listen(http, '127.0.0.1', pebble.httpPort);
    await listen(https, '127.0.0.1', pebble.tlsPort);
    await manager.loadCached();
    manager.start();
    const harness: Harness = {
      manager,
      logs,
      httpRequests,
      async close() {
        manager.stop();
        http.closeAllConnections();
        https.closeAllConnections();
        await Promise.all([closeServer(http), closeServer(https)]);
      },
    };
    open.push(harness);
    return harness;
  }

  /** A TLS handshake with the HTTPS listener; resolves with the served certificate or rejects. */
  function handshake(servername: string | undefined, alpn = ['http/1.1']): Promise<PeerCertificate> {
    return withTimeout(
      new Promise((resolve, reject) => {
        const socket = tlsConnect({
          host: '127.0.0.1',
          port: pebble.tlsPort,
          ...(servername === undefined ? {} : { servername }),
          ca: root,
          ALPNProtocols: alpn,
        });
        socket.once('secureConnect', () => {
          const cert = socket.getPeerCertificate();
          socket.destroy();
          resolve(cert);
        });
        socket.once('error', (err) => {
          socket.destroy();
          reject(err);
        });
      }),
      10_000,
      `TLS handshake (${servername})`,
    );
  }

  function waitForLog(h: Harness, msg: string, timeoutMs = 20_000): Promise<LogLine> {
    return waitFor(
      () => h.logs.find((l) => l.msg === msg),
      timeoutMs,
      `log ${msg}; logs so far: ${JSON.stringify(h.logs)}`,
      20,
    );
  }

  it('obtains a certificate through real HTTP-01 validation and serves it for the domain only', async () => {
    const dir = cacheDir();
    const h = await serve({ cacheDir: dir });
    const obtained = await waitForLog(h, 'autocert_certificate_obtained');
    expect(obtained).toMatchObject({ level: 'INFO', domain: DOMAIN });
    // pebble fetched the token from the HTTP-01 listener (from several "perspectives").
    expect(h.httpRequests.some((p) => p.startsWith('/.well-known/acme-challenge/'))).toBe(true);

    const cert = await handshake(DOMAIN);
    expect(cert.subjectaltname).toBe(`DNS:${DOMAIN}`);
    expect(cert.serialNumber.toUpperCase()).toBe(h.manager.certificate!.serial.toUpperCase());
    // ECDSA P-256 certificate key.
    expect(cert.asn1Curve ?? cert.nistCurve).toMatch(/prime256v1|P-256/);
    // Upper case SNI is the same name.
    await expect(handshake('LOCALHOST')).resolves.toBeDefined();
    // Host whitelist: another name or no SNI gets no certificate.
    await expect(handshake('other.example')).rejects.toThrow();
    await expect(handshake(undefined)).rejects.toThrow();
    // Offering only acme-tls/1 with no challenge pending fails too.
    await expect(handshake(DOMAIN, ['acme-tls/1'])).rejects.toThrow();
    // A client that offers no ALPN at all is served.
    await expect(handshake(DOMAIN, [])).resolves.toBeDefined();

    // The cache: account key, key and chain, every file 0600.
    const files = readdirSync(dir).sort();
    expect(files).toContain(ACCOUNT_KEY_FILE);
    expect(files.filter((f) => f.endsWith('.crt'))).toHaveLength(1);
    expect(files.filter((f) => f.endsWith('.key'))).toHaveLength(2);
    expect(files.filter((f) => f.endsWith('.tmp'))).toEqual([]);
    for (const f of files) expect(statSync(join(dir, f)).mode & 0o777, f).toBe(0o600);
  });

  it('obtains a certificate through real TLS-ALPN-01 validation on the HTTPS listener', async () => {
    const h = await serve({ cacheDir: cacheDir(), challengePriority: ['tls-alpn-01'] });
    await waitForLog(h, 'autocert_certificate_obtained');
    // No HTTP-01 request was needed.
    expect(h.httpRequests).toEqual([]);
    const cert = await handshake(DOMAIN);
    expect(cert.serialNumber.toUpperCase()).toBe(h.manager.certificate!.serial.toUpperCase());
  });

  it('reuses a cached certificate without ordering, and rejects a cache whose key does not match', async () => {
    const dir = cacheDir();
    const first = await serve({ cacheDir: dir });
    await waitForLog(first, 'autocert_certificate_obtained');
    const serial = first.manager.certificate!.serial;
    await first.close();
    open.splice(open.indexOf(first), 1);

    const second = await serve({ cacheDir: dir });
    expect(second.logs.find((l) => l.msg === 'autocert_certificate_loaded')).toMatchObject({ domain: DOMAIN });
    expect(second.manager.certificate!.serial).toBe(serial);
    expect((await handshake(DOMAIN)).serialNumber.toUpperCase()).toBe(serial.toUpperCase());
    await sleep(300);
    expect(second.logs.map((l) => l.msg)).not.toContain('autocert_certificate_obtained');
    await second.close();
    open.splice(open.indexOf(second), 1);

    // Replace the certificate key with another key: the pair no longer matches -> a new order.
    const keyFile = readdirSync(dir).find((f) => f.endsWith('.key') && f !== ACCOUNT_KEY_FILE)!;
    cpSync(join(dir, ACCOUNT_KEY_FILE), join(dir, keyFile));
    const third = await serve({ cacheDir: dir });
    expect(third.logs.map((l) => l.msg)).not.toContain('autocert_certificate_loaded');
    await waitForLog(third, 'autocert_certificate_obtained');
    expect(third.manager.certificate!.serial).not.toBe(serial);
  });

  it('a certificate expiring within the renewal window is served and replaced without a restart', async () => {
    const dir = cacheDir();
    const first = await serve({ cacheDir: dir });
    await waitForLog(first, 'autocert_certificate_obtained');
    await first.close();
    open.splice(open.indexOf(first), 1);

    // pebble certificates live five years: a clock ten days before the expiry makes the cached one due.
    const h = await serve({
      cacheDir: dir,
      now: tenDaysBefore(first.manager.certificate!.notAfterMs),
      checkIntervalMs: 60_000,
    });
    const loaded = h.manager.certificate!.serial;
    await waitForLog(h, 'autocert_certificate_obtained');
    const renewed = h.manager.certificate!.serial;
    expect(renewed).not.toBe(loaded);
    expect((await handshake(DOMAIN)).serialNumber.toUpperCase()).toBe(renewed.toUpperCase());
  });

  it('a failing renewal keeps serving the old certificate and logs autocert_renewal_failed, rate-limited', async () => {
    const good = cacheDir();
    const first = await serve({ cacheDir: good });
    await waitForLog(first, 'autocert_certificate_obtained');
    const serial = first.manager.certificate!.serial;
    await first.close();
    open.splice(open.indexOf(first), 1);

    // The same cache under a CA whose directory is unreachable. Cache files are per CA, so copy
    // the certificate files to the names the manager uses for this directory URL.
    const dir = cacheDir();
    // A 404 from the CA's host is not retried by acme-client (unlike a refused connection).
    const deadUrl = pebble.directoryUrl.replace(/\/dir$/, '/no-such-directory');
    const probe = new AutocertManager({
      domain: DOMAIN,
      cacheDir: dir,
      directoryUrl: deadUrl,
      log: createLogger('json', { write() {} }),
    });
    const names = probe as unknown as { certFile: string; keyFile: string };
    for (const f of readdirSync(good)) {
      if (f.endsWith('.crt')) cpSync(join(good, f), join(dir, names.certFile));
      else if (f.endsWith('.key') && f !== ACCOUNT_KEY_FILE) cpSync(join(good, f), join(dir, names.keyFile));
    }
    const h = await serve({
      cacheDir: dir,
      directoryUrl: deadUrl,
      now: tenDaysBefore(first.manager.certificate!.notAfterMs),
      retryMinMs: 50,
      retryMaxMs: 100,
    });
    expect(h.manager.certificate!.serial).toBe(serial);
    const failed = await waitForLog(h, 'autocert_renewal_failed');
    expect(failed).toMatchObject({ level: 'WARN', domain: DOMAIN, suppressed: 0 });
    expect(String(failed['err'])).toMatch(/404/);
    await sleep(600); // several more failed attempts
    expect(h.logs.filter((l) => l.msg === 'autocert_renewal_failed')).toHaveLength(1);
    expect((await handshake(DOMAIN)).serialNumber.toUpperCase()).toBe(serial.toUpperCase());
  });

  it('without any certificate a failing order logs autocert_obtain_failed (error) and handshakes fail', async () => {
    const h = await serve({
      cacheDir: cacheDir(),
      directoryUrl: pebble.directoryUrl.replace(/\/dir$/, '/no-such-directory'),
      retryMinMs: 60_000,
    });
    const failed = await waitForLog(h, 'autocert_obtain_failed');
    expect(failed).toMatchObject({ level: 'ERROR', domain: DOMAIN });
    expect(h.manager.hasCertificate).toBe(false);
    await expect(handshake(DOMAIN)).rejects.toThrow();
  });

  it('the HTTP-01 listener answers only pending challenges: everything else is 404 "404 page not found"', async () => {
    await serve({
      cacheDir: cacheDir(),
      directoryUrl: pebble.directoryUrl.replace(/\/dir$/, '/no-such-directory'),
      retryMinMs: 60_000,
    });
    for (const path of [
      '/',
      '/healthz',
      '/readyz',
      '/v1/server',
      '/.well-known/acme-challenge/',
      '/.well-known/acme-challenge/nope',
    ]) {
      const res = await get(pebble.httpPort, path);
      expect(res, path).toMatchObject({ status: 404, body: '404 page not found\n' });
      expect(res.location, path).toBeUndefined();
    }
    // A WebSocket upgrade there gets the same 404 on the raw socket.
    const raw = await rawExchange(
      pebble.httpPort,
      'GET /v1/server HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    expect(raw).toMatch(/^HTTP\/1\.1 404 Not Found\r\n/);
    expect(raw.endsWith('\r\n\r\n404 page not found\n')).toBe(true);
  });
});

/** A clock running ten days before `notAfterMs` (for the renewal window). */
function tenDaysBefore(notAfterMs: number): () => number {
  const offset = notAfterMs - 10 * 86_400_000 - Date.now();
  return () => Date.now() + offset;
}

function get(port: number, path: string): Promise<{ status: number; body: string; location: string | undefined }> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, path, headers: { Host: DOMAIN } }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, location: res.headers.location }));
      });
      req.on('error', reject);
      req.end();
    }),
    5_000,
    `GET ${path}`,
  );
}

function rawExchange(port: number, request: string): Promise<string> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const socket = netConnect({ host: '127.0.0.1', port }, () => socket.write(request));
      let data = '';
      socket.setEncoding('utf8').on('data', (c: string) => (data += c));
      socket.on('close', () => resolve(data));
      socket.on('error', reject);
    }),
    5_000,
    'raw exchange',
  );
}

// ---------------------------------------------------------------------------------------------
// The built daemon

describe.skipIf(!runPebble)('daemon --domain against pebble', () => {
  let pebble: Pebble;
  let root: string;
  let work: string;
  /** A cache holding a certificate from this pebble (filled by the first test). */
  let seededCache: string;
  const daemons: DaemonHandle[] = [];
  const clients: TestClient[] = [];

  beforeAll(async () => {
    if (!existsSync(DAEMON_MAIN)) throw new Error(`${DAEMON_MAIN} is missing: run npx tsc -p tsconfig.json first`);
    pebble = await startPebble({ httpPort: await freePort(), tlsPort: await freePort() });
    root = await pebble.root();
    work = mkdtempSync(join(tmpdir(), 'autocert-daemon-'));
    seededCache = join(work, 'nested', 'certs');
  });
  afterAll(async () => {
    await pebble?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.ws.terminate();
    for (const d of daemons.splice(0)) await d.stop();
  });

  function startRelayDaemon(cacheDir: string, extra: string[] = []): DaemonHandle {
    const d = startDaemon(
      [
        '--domain',
        DOMAIN,
        '--https-listen',
        `127.0.0.1:${pebble.tlsPort}`,
        '--http-listen',
        `127.0.0.1:${pebble.httpPort}`,
        '--acme-directory',
        pebble.directoryUrl,
        '--cert-cache',
        cacheDir,
        '--metrics-listen=',
        '--shutdown-timeout',
        '2s',
        '--log-format',
        'json',
        ...extra,
      ],
      // The daemon trusts pebble's ACME endpoint the way an operator trusts a private CA.
      cleanEnv({ NODE_EXTRA_CA_CERTS: pebble.listenerCertPath }),
    );
    daemons.push(d);
    return d;
  }

  function logLines(d: DaemonHandle): LogLine[] {
    return d
      .stderr()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as LogLine);
  }

  /** GET over TLS to the daemon with SNI `localhost` and the given Host header. */
  function httpsGet(path: string, host: string): Promise<{ status: number; body: string }> {
    return withTimeout(
      new Promise((resolve, reject) => {
        const req = httpsRequest(
          {
            host: '127.0.0.1',
            port: pebble.tlsPort,
            path,
            servername: DOMAIN,
            ca: root,
            headers: { Host: host },
            agent: false,
          },
          (res) => {
            let body = '';
            res.setEncoding('utf8').on('data', (c: string) => (body += c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          },
        );
        req.on('error', reject);
        req.end();
      }),
      5_000,
      `GET https ${path}`,
    );
  }

  /** Raw bytes over TLS (SNI `localhost`) on an optional PROXY v2 header; what came back before the close. */
  function tlsExchange(request: string, proxyHeader?: Buffer): Promise<string> {
    return withTimeout(
      new Promise((resolve, reject) => {
        const tcp = netConnect({ host: '127.0.0.1', port: pebble.tlsPort }, () => {
          if (proxyHeader !== undefined) tcp.write(proxyHeader);
          const tlsSocket = tlsConnect({ socket: tcp, servername: DOMAIN, ca: root, ALPNProtocols: ['http/1.1'] }, () =>
            tlsSocket.write(request),
          );
          let data = '';
          tlsSocket.setEncoding('utf8').on('data', (c: string) => {
            data += c;
            // An upgrade answer (101) leaves the socket open: one status line is enough.
            if (data.includes('\r\n\r\n') && data.startsWith('HTTP/1.1 101')) tlsSocket.destroy();
          });
          tlsSocket.on('close', () => resolve(data));
          tlsSocket.on('error', reject);
        });
        tcp.on('error', reject);
      }),
      5_000,
      'TLS exchange',
    );
  }

  function upgradeRequest(path: string, host: string, headers: Record<string, string>): string {
    return (
      `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
      'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
      Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('') +
      '\r\n'
    );
  }

  it('obtains a certificate over real HTTP-01 and serves a wss session with it; 421 for a wrong Host; 404 on the HTTP-01 port', async () => {
    const d = startRelayDaemon(seededCache);
    await d.waitStderr('"msg":"autocert_certificate_obtained"', 20_000);
    const logs = logLines(d);
    expect(logs.find((l) => l.msg === 'starting')).toEqual({
      time: expect.any(String),
      level: 'INFO',
      msg: 'starting',
      version: expect.any(String),
      mode: 'autocert',
      domain: DOMAIN,
      cert_cache: seededCache,
      https_proxy_protocol: false,
    });
    // The missing cache directory (and its parent) was created 0700.
    expect(statSync(seededCache).mode & 0o777).toBe(0o700);

    // A binary and a phone exchange frames over wss with the issued certificate (pebble's root).
    const host = `${DOMAIN}:${pebble.tlsPort}`;
    const tlsOptions = { ca: root, servername: DOMAIN };
    const binary = new TestClient(
      `wss://127.0.0.1:${pebble.tlsPort}/v1/server`,
      { ...binaryHeaders('srv-acme'), Host: host },
      tlsOptions,
    );
    clients.push(binary);
    await binary.open(5_000);
    const phone = new TestClient(
      `wss://127.0.0.1:${pebble.tlsPort}/v1/client`,
      { ...phoneHeaders('srv-acme'), Host: host },
      tlsOptions,
    );
    clients.push(phone);
    await phone.open(5_000);
    phone.send('{"over":"acme"}');
    const envelope = await binary.message(1);
    expect(envelope).toMatch(/^\{"conn_id":"client-srv-acme-[0-9a-f]{8}","frame":\{"over":"acme"\}\}$/);
    const connId = (JSON.parse(envelope) as { conn_id: string }).conn_id;
    binary.send(`{"conn_id":"${connId}","frame":{"reply":1}}`);
    expect(await phone.message(1)).toBe('{"reply":1}');

    // The Host check wraps every HTTPS route: 421 with an empty body.
    for (const path of ['/healthz', '/readyz', '/v1/server', '/v1/client', '/nope']) {
      expect(await httpsGet(path, 'other.example'), path).toEqual({ status: 421, body: '' });
      expect(await httpsGet(path, `other.example:${pebble.tlsPort}`), path).toEqual({ status: 421, body: '' });
    }
    const upgrade421 = await tlsExchange(upgradeRequest('/v1/server', 'other.example', binaryHeaders('srv-x')));
    expect(upgrade421).toMatch(/^HTTP\/1\.1 421 Misdirected Request\r\n/);
    expect(upgrade421.endsWith('\r\n\r\n')).toBe(true);
    // HTTP/1.0 without Host has no name to match: 421. HTTP/1.1 without Host is malformed: 400
    // before the Host check, as from Go's server.
    expect(await tlsExchange('GET /healthz HTTP/1.0\r\n\r\n')).toMatch(/^HTTP\/1\.1 421 /);
    expect(await tlsExchange('GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    // The right Host, with or without port, any case.
    for (const h of [DOMAIN, host, 'LocalHost']) {
      const health = await httpsGet('/healthz', h);
      expect(health.status, h).toBe(200);
      expect(JSON.parse(health.body)).toMatchObject({ status: 'ok', connected_binaries: 1, connected_phones: 1 });
    }

    // The HTTP-01 port: 404 for everything but challenges, no redirect.
    for (const path of ['/', '/healthz', '/v1/server']) {
      expect(await get(pebble.httpPort, path), path).toEqual({
        status: 404,
        body: '404 page not found\n',
        location: undefined,
      });
    }

    d.child.kill('SIGTERM');
    expect(await phone.waitClose(5_000)).toEqual({ code: 1001, reason: 'shutting down' });
    expect(await d.waitExit(10_000)).toEqual({ code: 0, signal: null });
  });

  it('a restart serves the cached certificate without a new order; group/other bits are tightened', async () => {
    const before = readdirSync(seededCache).sort();
    chmodSync(seededCache, 0o755);
    const d = startRelayDaemon(seededCache);
    await d.waitStderr('"msg":"autocert_certificate_loaded"', 10_000);
    const logs = logLines(d);
    expect(logs.find((l) => l.msg === 'tightened cert cache dir perms')).toMatchObject({
      level: 'INFO',
      path: seededCache,
      from: '0755',
      to: '0700',
    });
    expect(statSync(seededCache).mode & 0o777).toBe(0o700);
    const health = await waitFor(() => httpsGet('/healthz', DOMAIN).catch(() => null), 5_000, 'healthz over TLS');
    expect(health.status).toBe(200);
    await sleep(300);
    expect(logLines(d).map((l) => l.msg)).not.toContain('autocert_certificate_obtained');
    expect(readdirSync(seededCache).sort()).toEqual(before);
  });

  it.skipIf(process.getuid?.() !== 0)(
    'a foreign-owned cache directory with group/other bits is refused: exit 1, untouched',
    async () => {
      const dir = join(work, 'foreign');
      mkdirSync(dir, { mode: 0o755 });
      chmodSync(dir, 0o755);
      chownSync(dir, 65534, 65534);
      const d = startRelayDaemon(dir);
      expect(await d.waitExit(10_000)).toEqual({ code: 1, signal: null });
      expect(logLines(d).find((l) => l.level === 'ERROR')).toMatchObject({
        msg: 'autocert setup failed',
        cert_cache: dir,
        err: 'cert cache dir has insecure permissions (must be 0700)',
      });
      expect(statSync(dir).mode & 0o777).toBe(0o755);
      expect(d.stderr()).not.toContain('"msg":"starting"');
    },
  );

  it('a cache path that is not a directory: exit 1 "autocert setup failed"', async () => {
    const file = join(work, 'not-a-dir');
    writeFileSync(file, 'x');
    const d = startRelayDaemon(file);
    expect(await d.waitExit(10_000)).toEqual({ code: 1, signal: null });
    expect(logLines(d).find((l) => l.level === 'ERROR')).toMatchObject({
      msg: 'autocert setup failed',
      err: 'cert cache path exists but is not a directory',
    });
  });

  it('--https-proxy-protocol: the header source is the client address (rate limit, logs); no header, v1 or a bare ClientHello: closed, nothing written, counted by reason', async () => {
    const metricsPort = await freePort();
    const d = startRelayDaemon(seededCache, [
      '--https-proxy-protocol',
      '--rate-limit-burst',
      '1',
      '--rate-limit-interval',
      '1h',
      '--metrics-listen',
      `127.0.0.1:${metricsPort}`,
    ]);
    const scrape = async (): Promise<string> => (await httpGet(`http://127.0.0.1:${metricsPort}/metrics`)).body;
    const REFUSED = (reason: string): string => `pyrycode_relay_proxy_protocol_refusals_total{reason="${reason}"}`;
    await d.waitStderr('"msg":"autocert_certificate_loaded"', 10_000);
    await d.waitStderr('"msg":"starting"', 10_000);
    expect(logLines(d).find((l) => l.msg === 'starting')).toMatchObject({
      mode: 'autocert',
      https_proxy_protocol: true,
    });
    const status = async (src: string, serverId: string): Promise<string> => {
      const reply = await tlsExchange(
        upgradeRequest('/v1/server', DOMAIN, binaryHeaders(serverId)),
        proxyHeader(src, pebble.tlsPort),
      );
      return reply.slice(0, reply.indexOf('\r\n'));
    };
    await waitFor(() => accepts(pebble.tlsPort), 5_000, 'HTTPS listener');
    // Every reason pre-bound at 0 (the accepts() probes above are `closed`); the served
    // certificate's expiry is the cached one's.
    const boot = await scrape();
    for (const reason of ['bad_signature', 'local_command', 'timeout', 'header_too_large']) {
      expect(sampleValue(boot, REFUSED(reason)), reason).toBe(0);
    }
    const closedAtBoot = sampleValue(boot, REFUSED('closed'));
    expect(closedAtBoot).toBeGreaterThanOrEqual(1);
    const loaded = logLines(d).find((l) => l.msg === 'autocert_certificate_loaded')!;
    const cached = new X509Certificate(readFileSync(String(loaded['path'])));
    expect(sampleValue(boot, 'pyrycode_relay_tls_cert_expiry_timestamp_seconds')).toBe(
      Date.parse(cached.validTo) / 1000,
    );
    // One token per source address: the second request from the same header address is limited,
    // while another address (over the same loopback peer) still passes.
    expect(await status('203.0.113.9', 'srv-p1')).toBe('HTTP/1.1 101 Switching Protocols');
    expect(await status('203.0.113.9', 'srv-p2')).toBe('HTTP/1.1 429 Too Many Requests');
    expect(await status('203.0.113.10', 'srv-p3')).toBe('HTTP/1.1 101 Switching Protocols');
    expect(await status('2001:db8::9', 'srv-p4')).toBe('HTTP/1.1 101 Switching Protocols');
    expect(await status('2001:db8::9', 'srv-p5')).toBe('HTTP/1.1 429 Too Many Requests');
    await waitFor(() => logLines(d).filter((l) => l.msg === 'rate_limited').length >= 2, 3_000, 'rate_limited logs');
    expect(
      logLines(d)
        .filter((l) => l.msg === 'rate_limited')
        .map((l) => l['remote']),
    ).toEqual(['"203.0.113.9"', '"2001:db8::9"']);
    const claimed = logLines(d)
      .filter((l) => l.msg === 'server_claimed')
      .map((l) => [l['server_id'], l['remote']]);
    expect(claimed).toEqual([
      ['srv-p1', '203.0.113.9'],
      ['srv-p3', '203.0.113.10'],
      ['srv-p4', '2001:db8::9'],
    ]);

    // Without a valid header: closed with zero bytes written.
    const v1 = Buffer.from(`PROXY TCP4 198.51.100.1 127.0.0.1 5555 ${pebble.tlsPort}\r\n`);
    const clientHello = await captureClientHello();
    for (const [name, bytes] of [
      ['v1 header', v1],
      ['bare ClientHello', clientHello],
      ['LOCAL', proxyHeader('203.0.113.9', pebble.tlsPort, 0x20)],
    ] as const) {
      const got = await rawTcp(pebble.tlsPort, bytes);
      expect(got, name).toEqual({ bytes: 0, closed: true });
    }
    const after = await scrape();
    expect(sampleValue(after, REFUSED('bad_signature'))).toBe(2);
    expect(sampleValue(after, REFUSED('local_command'))).toBe(1);
    expect(sampleValue(after, REFUSED('closed'))).toBe(closedAtBoot);
    // The relay still serves a good header afterwards.
    expect(await status('203.0.113.11', 'srv-p6')).toBe('HTTP/1.1 101 Switching Protocols');
  });
});

/** A PROXY v2 header (PROXY command by default) from `src`:40000 to 127.0.0.1:`dstPort`. */
function proxyHeader(src: string, dstPort: number, versionCommand = 0x21): Buffer {
  const v6 = src.includes(':');
  const block = Buffer.alloc(v6 ? 36 : 12);
  if (v6) {
    ipv6Bytes(src).copy(block, 0);
    ipv6Bytes('::1').copy(block, 16);
    block.writeUInt16BE(40000, 32);
    block.writeUInt16BE(dstPort, 34);
  } else {
    Buffer.from(src.split('.').map(Number)).copy(block, 0);
    Buffer.from([127, 0, 0, 1]).copy(block, 4);
    block.writeUInt16BE(40000, 8);
    block.writeUInt16BE(dstPort, 10);
  }
  const head = Buffer.alloc(16);
  PROXY_V2_SIGNATURE.copy(head, 0);
  head[12] = versionCommand;
  head[13] = v6 ? 0x21 : 0x11;
  head.writeUInt16BE(block.length, 14);
  return Buffer.concat([head, block]);
}

function ipv6Bytes(text: string): Buffer {
  const [headText, tailText = ''] = text.split('::');
  const groups = (t: string): number[] => (t === '' ? [] : t.split(':').map((g) => parseInt(g, 16)));
  const h = groups(headText!);
  const t = groups(tailText);
  const all = [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  const buf = Buffer.alloc(16);
  all.forEach((g, i) => {
    buf.writeUInt16BE(g, i * 2);
  });
  return buf;
}

/** The first bytes a TLS client sends (a ClientHello), captured from a local TLS client. */
function captureClientHello(): Promise<Buffer> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const server = createNetServer((socket) => {
        socket.once('data', (chunk: Buffer) => {
          socket.destroy();
          server.close();
          resolve(chunk);
        });
      });
      server.listen(0, '127.0.0.1', () => {
        const port = (server.address() as { port: number }).port;
        const client = tlsConnect({ host: '127.0.0.1', port, servername: DOMAIN });
        client.on('error', () => {});
      });
      server.on('error', reject);
    }),
    5_000,
    'a ClientHello',
  );
}

/** Writes `bytes`, then reports how many bytes came back before the server closed. */
function rawTcp(port: number, bytes: Buffer): Promise<{ bytes: number; closed: boolean }> {
  return withTimeout(
    new Promise((resolve) => {
      let received = 0;
      const socket = netConnect({ host: '127.0.0.1', port }, () => socket.write(bytes));
      socket.on('data', (c: Buffer) => (received += c.length));
      socket.on('error', () => {});
      socket.on('close', () => resolve({ bytes: received, closed: true }));
    }),
    8_000,
    'server close',
  );
}
