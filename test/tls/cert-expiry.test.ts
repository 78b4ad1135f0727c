// The certificate-expiry gauge against the BUILT daemon in static-TLS mode
// (docs/metrics.md, "Certificates"): pyrycode_relay_tls_cert_expiry_timestamp_seconds is the served certificate's
// notAfter in Unix seconds; the insecure mode has no such family. The autocert side is in
// autocert.test.ts; the alert on it in docs/ops/alerts.test.yml.

import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DAEMON_MAIN, startDaemon } from '../helpers/daemon.js';
import { httpGet } from '../helpers/http.js';
import { freePort } from '../helpers/ports.js';
import { sampleValue } from '../helpers/scrape.js';
import { hasOpenssl, type SelfSigned, selfSignedCert } from '../helpers/tls.js';
import { waitFor } from '../helpers/wait.js';

const GAUGE = 'pyrycode_relay_tls_cert_expiry_timestamp_seconds';

beforeAll(() => {
  if (!existsSync(DAEMON_MAIN)) throw new Error(`${DAEMON_MAIN} is missing: run npx tsc -p . first`);
  if (!hasOpenssl && process.env.CI) throw new Error('openssl not installed: .ci/run must install it');
});

describe.skipIf(!hasOpenssl)('tls_cert_expiry_timestamp_seconds', () => {
  let cert: SelfSigned;
  beforeAll(async () => {
    cert = await selfSignedCert({ commonName: '127.0.0.1', keyType: 'rsa', days: 17, dirPrefix: 'relay-expiry-' });
  });
  afterAll(() => cert?.remove());

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
      cert.certPath,
      '--tls-key',
      cert.keyPath,
      '--https-listen',
      `127.0.0.1:${port}`,
    ]);
    const notAfter = Date.parse(new X509Certificate(readFileSync(cert.certPath)).validTo) / 1000;
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
