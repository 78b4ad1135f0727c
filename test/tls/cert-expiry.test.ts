// The certificate-expiry gauge against the BUILT daemon in static-TLS mode
// (docs/metrics.md, "Certificates"): pyrycode_relay_tls_cert_expiry_timestamp_seconds is the served certificate's
// notAfter in Unix seconds; the insecure mode has no such family. The autocert side is in
// autocert.test.ts; the alert on it in docs/ops/alerts.test.yml.

import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DAEMON_MAIN, freePort, startDaemon } from '../helpers/daemon.js';
import { hasOpenssl } from '../helpers/pebble.js';
import { httpGet, sampleValue } from '../helpers/relay.js';
import { waitFor, withTimeout } from '../helpers/wait.js';

const GAUGE = 'pyrycode_relay_tls_cert_expiry_timestamp_seconds';

beforeAll(() => {
  if (!existsSync(DAEMON_MAIN)) throw new Error(`${DAEMON_MAIN} is missing: run npx tsc -p . first`);
  if (!hasOpenssl && process.env.CI) throw new Error('openssl not installed: .ci/run must install it');
});

describe.skipIf(!hasOpenssl)('tls_cert_expiry_timestamp_seconds', () => {
  let dir = '';
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'relay-expiry-'));
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
            '-days',
            '17',
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
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  async function scrapeOf(args: string[]): Promise<string> {
    const metricsPort = await freePort();
    const d = startDaemon([...args, '--metrics-listen', `127.0.0.1:${metricsPort}`, '--shutdown-timeout', '2s']);
    try {
      await d.waitStderr('msg="starting metrics listener"', 10_000);
      return await waitFor(
        async () => {
          const res = await httpGet(`http://127.0.0.1:${metricsPort}/metrics`).catch(() => undefined);
          return res?.status === 200 ? res.body : undefined;
        },
        10_000,
        'a scrape',
        50,
      );
    } finally {
      await d.stop();
    }
  }

  it('static TLS: the served certificate notAfter, in Unix seconds', async () => {
    const port = await freePort();
    const text = await scrapeOf([
      '--tls-cert',
      join(dir, 'cert.pem'),
      '--tls-key',
      join(dir, 'key.pem'),
      '--https-listen',
      `127.0.0.1:${port}`,
    ]);
    const notAfter = Date.parse(new X509Certificate(readFileSync(join(dir, 'cert.pem'))).validTo) / 1000;
    expect(sampleValue(text, GAUGE)).toBe(notAfter);
    // About 17 days ahead (the alert fires below 14).
    expect(notAfter - Date.now() / 1000).toBeGreaterThan(16 * 86_400);
    expect(text).toContain(`# TYPE ${GAUGE} gauge\n`);
  });

  it('insecure mode: no certificate, no family', async () => {
    const port = await freePort();
    const text = await scrapeOf(['--insecure-listen', `127.0.0.1:${port}`]);
    expect(text).not.toContain(GAUGE);
  });
});
