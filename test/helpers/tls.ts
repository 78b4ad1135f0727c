// TLS fixtures for tests: a self-signed certificate and key made by openssl in a fresh temporary
// directory (for --tls-cert/--tls-key, an HTTPS server in front of requireProxyV2, pebble's own
// listener), the daemon flags that serve it, and a real ClientHello. openssl is a CI dependency;
// locally the tests that need it skip.

import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { withTimeout } from './wait.js';

export const hasOpenssl = spawnSync('openssl', ['version']).status === 0;

/** Throws in CI when openssl is missing; returns whether the TLS tests can run. */
export function requireOpenssl(): boolean {
  if (!hasOpenssl && process.env.CI)
    throw new Error('openssl not installed: .ci/run must install the Debian package `openssl`');
  return hasOpenssl;
}

export interface SelfSignedOptions {
  /** Subject common name, e.g. '127.0.0.1'. */
  commonName: string;
  /** subjectAltName value, e.g. 'IP:127.0.0.1' or 'DNS:localhost,IP:127.0.0.1'; none if absent. */
  altNames?: string;
  /** Key type: an EC P-256 key (default) or RSA 2048. */
  keyType?: 'ec' | 'rsa';
  /** Validity in days. */
  days?: number;
  /** Prefix of the temporary directory's name. */
  dirPrefix?: string;
}

export interface SelfSigned {
  /** The temporary directory holding cert.pem and key.pem (remove() deletes it). */
  dir: string;
  certPath: string;
  keyPath: string;
  cert: Buffer;
  key: Buffer;
  remove(): void;
}

const OPENSSL_TIMEOUT_MS = 20_000;

/** A self-signed certificate and its unencrypted key, written by `openssl req -x509`. */
export async function selfSignedCert(options: SelfSignedOptions): Promise<SelfSigned> {
  const dir = mkdtempSync(join(tmpdir(), options.dirPrefix ?? 'relay-tls-'));
  const certPath = join(dir, 'cert.pem');
  const keyPath = join(dir, 'key.pem');
  const keyArgs =
    (options.keyType ?? 'ec') === 'ec'
      ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']
      : ['-newkey', 'rsa:2048'];
  const args = [
    'req',
    '-x509',
    ...keyArgs,
    '-nodes',
    '-subj',
    `/CN=${options.commonName}`,
    ...(options.altNames === undefined ? [] : ['-addext', `subjectAltName=${options.altNames}`]),
    '-days',
    String(options.days ?? 1),
    '-keyout',
    keyPath,
    '-out',
    certPath,
  ];
  try {
    await withTimeout(
      new Promise<void>((resolve, reject) => execFile('openssl', args, (err) => (err ? reject(err) : resolve()))),
      OPENSSL_TIMEOUT_MS,
      'openssl self-signed certificate',
    );
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    dir,
    certPath,
    keyPath,
    cert: readFileSync(certPath),
    key: readFileSync(keyPath),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** The daemon's static-TLS flags for this certificate, serving https on 127.0.0.1:`port`. */
export function tlsListenArgs(cert: SelfSigned, port: number): string[] {
  return ['--tls-cert', cert.certPath, '--tls-key', cert.keyPath, '--https-listen', `127.0.0.1:${port}`];
}

/** The first bytes a TLS client sends (its ClientHello for `servername`), captured with a local
 * TCP server. */
export function captureClientHello(servername: string): Promise<Buffer> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const server = createNetServer((socket) => {
        socket.once('data', (chunk: Buffer) => {
          socket.destroy();
          server.close();
          resolve(chunk);
        });
      });
      server.on('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const port = (server.address() as { port: number }).port;
        tlsConnect({ host: '127.0.0.1', port, servername }).on('error', () => {});
      });
    }),
    5_000,
    'a ClientHello',
  );
}
