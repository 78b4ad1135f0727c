// Client-initiated TLS 1.2 renegotiation is refused on the relay's TLS listeners (session 6's
// review C): Node allowed three per connection by default (then closed it), each a full
// handshake's worth of server CPU for the client's asking. The Go reference never renegotiates.
// The relay's own server factory (src/http/listeners.ts) with a self-signed certificate.

import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { connect, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTlsServer } from '../../src/http/listeners.js';
import { hasOpenssl, type SelfSigned, selfSignedCert } from '../helpers/tls.js';
import { withTimeout } from '../helpers/wait.js';

describe.skipIf(!hasOpenssl)('TLS renegotiation', () => {
  let cert: SelfSigned;
  beforeAll(async () => {
    cert = await selfSignedCert({ commonName: '127.0.0.1', keyType: 'rsa', days: 2, dirPrefix: 'relay-reneg-' });
  });
  afterAll(() => cert?.remove());

  it('a TLS 1.2 client asking to renegotiate is refused', async () => {
    const server = createTlsServer(readFileSync(cert.certPath), readFileSync(cert.keyPath));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    try {
      const socket: TLSSocket = await withTimeout(
        new Promise((resolve, reject) => {
          const s = connect({ host: '127.0.0.1', port, rejectUnauthorized: false, maxVersion: 'TLSv1.2' }, () =>
            resolve(s),
          );
          s.once('error', reject);
        }),
        5_000,
        'TLS 1.2 handshake',
      );
      const outcome = await withTimeout(
        new Promise<string>((resolve) => {
          socket.on('error', (err) => resolve(`error: ${err.message}`));
          socket.on('close', () => resolve('closed'));
          const started = socket.renegotiate({ rejectUnauthorized: false }, (err) =>
            resolve(err === null ? 'renegotiated' : `error: ${err.message}`),
          );
          if (!started) resolve('not started');
        }),
        5_000,
        'the renegotiation outcome',
      );
      socket.destroy();
      // The server answers the request with a no_renegotiation alert; OpenSSL reports it as such.
      expect(outcome).toMatch(/^error: .*no renegotiation/);
    } finally {
      server.close();
    }
  });
});
