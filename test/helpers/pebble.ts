// A real ACME test CA for the autocert tests: Debian's `pebble` (installed by .ci/run), one
// instance per test file on free loopback ports, killed in afterAll.
//
// Pebble validates challenges for real: HTTP-01 against http://<domain>:<httpPort>/ and
// TLS-ALPN-01 against <domain>:<tlsPort>, resolving <domain> with the system resolver (the tests
// use `localhost`). Its ACME API is HTTPS with a certificate made here (openssl); clients trust it
// through NODE_EXTRA_CA_CERTS=<listenerCertPath> (a spawned daemon) or an explicit CA. Certificates
// it issues chain to a root generated at each start, fetched from the management port.
//
// Without pebble the test files skip locally but fail in CI (CI set), like prometheus.test.ts.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { join } from 'node:path';
import { accepts, freePort } from './ports.js';
import { hasOpenssl, selfSignedCert } from './tls.js';
import { waitFor, withTimeout } from './wait.js';

export const hasPebble = spawnSync('pebble', ['-h']).error === undefined;

/** Throws in CI when pebble or openssl is missing; returns whether the pebble tests can run. */
export function requirePebble(): boolean {
  const ok = hasPebble && hasOpenssl;
  if (!ok && process.env.CI) {
    throw new Error('pebble/openssl not installed: .ci/run must install the Debian packages `pebble` and `openssl`');
  }
  if (!ok) console.warn('pebble or openssl not installed: skipping the ACME tests (apt-get install pebble openssl)');
  return ok;
}

export interface PebbleOptions {
  /** Port pebble's VA connects to for HTTP-01 (the relay's --http-listen port). */
  httpPort: number;
  /** Port pebble's VA connects to for TLS-ALPN-01 (the relay's HTTPS port). */
  tlsPort: number;
  /** PEBBLE_VA_ALWAYS_VALID=1: skip challenge validation. */
  alwaysValid?: boolean;
}

export interface Pebble {
  /** https://127.0.0.1:<port>/dir */
  directoryUrl: string;
  /** PEM of pebble's own HTTPS listener certificate (trust it for the directory). */
  listenerCertPath: string;
  listenerCert: Buffer;
  httpPort: number;
  tlsPort: number;
  /** PEM of the root that issued certificates chain to (new at every pebble start). */
  root(): Promise<string>;
  /** pebble's stdout+stderr so far. */
  output(): string;
  stop(): Promise<void>;
}

const STARTUP_TIMEOUT_MS = 15_000;

export async function startPebble(options: PebbleOptions): Promise<Pebble> {
  const keyPair = await selfSignedCert({
    commonName: 'localhost',
    altNames: 'DNS:localhost,IP:127.0.0.1',
    days: 2,
    dirPrefix: 'pebble-',
  });
  const { dir, certPath, keyPath } = keyPair;
  const listenPort = await freePort();
  const managementPort = await freePort();
  const configPath = join(dir, 'pebble-config.json');
  writeFileSync(
    configPath,
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${listenPort}`,
        managementListenAddress: `127.0.0.1:${managementPort}`,
        certificate: certPath,
        privateKey: keyPath,
        httpPort: options.httpPort,
        tlsPort: options.tlsPort,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
      },
    }),
  );
  const env: Record<string, string> = { ...(process.env as Record<string, string>), PEBBLE_VA_NOSLEEP: '1' };
  if (options.alwaysValid) env['PEBBLE_VA_ALWAYS_VALID'] = '1';
  const child: ChildProcess = spawn('pebble', ['-config', configPath], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let exited = false;
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (out += c));
  const closed = new Promise<void>((resolve) =>
    child.once('close', () => {
      exited = true;
      resolve();
    }),
  );
  child.once('error', () => (exited = true));
  const stop = async (): Promise<void> => {
    if (!exited) child.kill('SIGKILL');
    await withTimeout(closed, 5_000, 'pebble exit').catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(
      async () => {
        if (exited) throw new Error(`pebble exited during startup:\n${out}`);
        return (
          out.includes('ACME directory available') && (await accepts(listenPort)) && (await accepts(managementPort))
        );
      },
      STARTUP_TIMEOUT_MS,
      'pebble to listen',
      50,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  const listenerCert = readFileSync(certPath);
  let rootPem: string | undefined;
  return {
    directoryUrl: `https://127.0.0.1:${listenPort}/dir`,
    listenerCertPath: certPath,
    listenerCert,
    httpPort: options.httpPort,
    tlsPort: options.tlsPort,
    async root() {
      rootPem ??= await fetchText(`https://127.0.0.1:${managementPort}/roots/0`, listenerCert);
      return rootPem;
    },
    output: () => out,
    stop,
  };
}

function fetchText(url: string, ca: Buffer): Promise<string> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const req = httpsGet(url, { ca }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c: string) => (body += c));
        res.on('end', () =>
          res.statusCode === 200 ? resolve(body) : reject(new Error(`GET ${url}: HTTP ${res.statusCode}`)),
        );
      });
      req.on('error', reject);
    }),
    5_000,
    `GET ${url}`,
  );
}
