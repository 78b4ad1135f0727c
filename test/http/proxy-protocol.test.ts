// PROXY protocol v2 (docs/decisions.md, "PROXY v2 details"): the parser on byte strings, and requireProxyV2 on
// real servers driven through raw sockets — valid v4/v6 headers set the address the server sees
// (also through TLS), and v1, LOCAL, UNSPEC, UDP, UNIX, truncated, garbage, oversized and late
// headers close the connection with zero bytes written. The daemon-level test (rate-limit key,
// logs) is in autocert.test.ts.

import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, connect as netConnect, isIPv4, isIPv6, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { Duplex } from 'node:stream';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { closeServer, listen } from '../../src/http/listeners.js';
import {
  formatIPv6,
  parseProxyV2,
  PROXY_HEADER_TIMEOUT_MS,
  PROXY_V2_MAX_ADDRESS_BLOCK,
  PROXY_V2_SIGNATURE,
  requireProxyV2,
  type ProxyHeaderOptions,
} from '../../src/http/proxy-protocol.js';
import { sleep, withTimeout } from '../helpers/wait.js';

const TCP4 = 0x11;
const UDP4 = 0x12;
const TCP6 = 0x21;
const UDP6 = 0x22;
const UNIX_STREAM = 0x31;
const UNIX_DGRAM = 0x32;
const UNSPEC = 0x00;
const PROXY = 0x21;
const LOCAL = 0x20;

function ipv6(text: string): Buffer {
  const [headText, tailText = ''] = text.split('::');
  const groups = (t: string): number[] => (t === '' ? [] : t.split(':').map((g) => parseInt(g, 16)));
  const h = groups(headText!);
  const t = text.includes('::') ? groups(tailText) : [];
  const all = [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  const buf = Buffer.alloc(16);
  all.forEach((g, i) => {
    buf.writeUInt16BE(g, i * 2);
  });
  return buf;
}

interface HeaderSpec {
  versionCommand?: number;
  family?: number;
  src?: string;
  dst?: string;
  srcPort?: number;
  dstPort?: number;
  tlv?: Buffer;
  /** Override the declared block length. */
  length?: number;
}

function header(spec: HeaderSpec = {}): Buffer {
  const family = spec.family ?? TCP4;
  let block: Buffer;
  if (family === TCP6 || family === UDP6) {
    block = Buffer.alloc(36);
    ipv6(spec.src ?? '2001:db8::9').copy(block, 0);
    ipv6(spec.dst ?? '2001:db8::1').copy(block, 16);
    block.writeUInt16BE(spec.srcPort ?? 40000, 32);
    block.writeUInt16BE(spec.dstPort ?? 443, 34);
  } else if (family === UNIX_STREAM || family === UNIX_DGRAM) {
    block = Buffer.alloc(216);
    block.write('/run/client.sock', 0);
    block.write('/run/relay.sock', 108);
  } else if (family === UNSPEC) {
    block = Buffer.alloc(0);
  } else {
    block = Buffer.alloc(12);
    Buffer.from((spec.src ?? '203.0.113.9').split('.').map(Number)).copy(block, 0);
    Buffer.from((spec.dst ?? '192.0.2.1').split('.').map(Number)).copy(block, 4);
    block.writeUInt16BE(spec.srcPort ?? 40000, 8);
    block.writeUInt16BE(spec.dstPort ?? 443, 10);
  }
  if (spec.tlv) block = Buffer.concat([block, spec.tlv]);
  const head = Buffer.alloc(16);
  PROXY_V2_SIGNATURE.copy(head, 0);
  head[12] = spec.versionCommand ?? PROXY;
  head[13] = family;
  head.writeUInt16BE(spec.length ?? block.length, 14);
  return Buffer.concat([head, block]);
}

const V1_HEADER = Buffer.from('PROXY TCP4 198.51.100.1 192.0.2.1 56324 443\r\n');
const HTTP_GET = Buffer.from('GET /whoami HTTP/1.1\r\nHost: relay.test\r\nConnection: close\r\n\r\n');

describe('parseProxyV2', () => {
  it('TCP4: source and destination, header length, the rest left for the stream', () => {
    const h = header({ src: '203.0.113.9', srcPort: 51234, dst: '192.0.2.1', dstPort: 443 });
    const parsed = parseProxyV2(Buffer.concat([h, HTTP_GET]));
    expect(parsed).toEqual({
      kind: 'ok',
      length: 28,
      peer: {
        family: 'IPv4',
        sourceAddress: '203.0.113.9',
        sourcePort: 51234,
        destinationAddress: '192.0.2.1',
        destinationPort: 443,
      },
    });
  });

  it('TCP6: RFC 5952 text; an IPv4-mapped source counts as IPv4', () => {
    expect(parseProxyV2(header({ family: TCP6, src: '2001:db8:0:0:0:0:0:9', srcPort: 1 }))).toEqual({
      kind: 'ok',
      length: 52,
      peer: {
        family: 'IPv6',
        sourceAddress: '2001:db8::9',
        sourcePort: 1,
        destinationAddress: '2001:db8::1',
        destinationPort: 443,
      },
    });
    const mapped = parseProxyV2(header({ family: TCP6, src: '::ffff:c612:1' }));
    expect(mapped).toMatchObject({ kind: 'ok', peer: { family: 'IPv4', sourceAddress: '198.18.0.1' } });
  });

  it('TLVs after the addresses are skipped', () => {
    const tlv = Buffer.from([0x04, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x00, 0x02, 0x68, 0x32]); // NOOP, ALPN
    const parsed = parseProxyV2(Buffer.concat([header({ tlv }), Buffer.from('rest')]));
    expect(parsed).toMatchObject({ kind: 'ok', length: 16 + 12 + tlv.length, peer: { sourceAddress: '203.0.113.9' } });
    // The largest accepted block.
    const big = header({ tlv: Buffer.alloc(PROXY_V2_MAX_ADDRESS_BLOCK - 12) });
    expect(parseProxyV2(big)).toMatchObject({ kind: 'ok', length: 16 + PROXY_V2_MAX_ADDRESS_BLOCK });
  });

  it('every proper prefix of a valid header is incomplete', () => {
    for (const h of [header(), header({ family: TCP6 }), header({ tlv: Buffer.alloc(7) })]) {
      for (let n = 0; n < h.length; n++)
        expect(parseProxyV2(h.subarray(0, n)), `prefix ${n}`).toEqual({ kind: 'incomplete' });
    }
  });

  it.each<[string, Buffer, string]>([
    ['v1 text header', V1_HEADER, 'bad_signature'],
    ['v1 header, first byte only', V1_HEADER.subarray(0, 1), 'bad_signature'],
    ['TLS ClientHello', Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]), 'bad_signature'],
    ['HTTP request', HTTP_GET, 'bad_signature'],
    ['garbage', Buffer.from('\r\n\r\n\0\r\nQUIZ\nxxxxxxxxxxxxxxxxxxxxxxxxx'), 'bad_signature'],
    ['version 1 nibble', header({ versionCommand: 0x11 }), 'bad_version'],
    ['version 3 nibble', header({ versionCommand: 0x31 }), 'bad_version'],
    ['LOCAL', header({ versionCommand: LOCAL }), 'local_command'],
    ['LOCAL with UNSPEC', header({ versionCommand: LOCAL, family: UNSPEC }), 'local_command'],
    ['command 2', header({ versionCommand: 0x22 }), 'bad_command'],
    ['UNSPEC', header({ family: UNSPEC }), 'unsupported_family'],
    ['UDP over IPv4', header({ family: UDP4 }), 'unsupported_family'],
    ['UDP over IPv6', header({ family: UDP6 }), 'unsupported_family'],
    ['UNIX stream', header({ family: UNIX_STREAM }), 'unsupported_family'],
    ['UNIX datagram', header({ family: UNIX_DGRAM }), 'unsupported_family'],
    ['TCP4 block shorter than the addresses', header({ length: 8 }), 'short_address_block'],
    ['TCP6 block shorter than the addresses', header({ family: TCP6, length: 12 }), 'short_address_block'],
    [
      'declared block over the cap',
      header({ length: PROXY_V2_MAX_ADDRESS_BLOCK + 1 }).subarray(0, 16),
      'header_too_large',
    ],
    ['declared block at the wire maximum', header({ length: 65535 }).subarray(0, 16), 'header_too_large'],
  ])('refuses %s', (_name, bytes, reason) => {
    expect(parseProxyV2(bytes)).toEqual({ kind: 'reject', reason });
  });

  it('formatIPv6 follows RFC 5952', () => {
    const cases: [string, string][] = [
      ['0:0:0:0:0:0:0:0', '::'],
      ['0:0:0:0:0:0:0:1', '::1'],
      ['2001:db8:0:0:0:0:0:1', '2001:db8::1'],
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero group is not compressed
      ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // the longest run
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // the first of equal runs
      ['fe80:0:0:0:0:0:0:0', 'fe80::'],
      ['2001:DB8:AAAA:0:0:0:0:0', '2001:db8:aaaa::'],
      ['0:0:0:0:0:ffff:102:304', '1.2.3.4'],
    ];
    for (const [input, out] of cases) expect(formatIPv6(ipv6(input), 0), input).toBe(out);
  });

  it('formatIPv6: any 16 bytes give a valid address that denotes the same bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
        const text = formatIPv6(Buffer.from(bytes), 0);
        if (isIPv4(text)) {
          expect([...bytes.slice(0, 12)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
          expect(text).toBe([...bytes.slice(12)].join('.'));
        } else {
          expect(isIPv6(text)).toBe(true);
          expect([...ipv6(text)]).toEqual([...bytes]);
          expect(text).toBe(text.toLowerCase());
        }
      }),
      { numRuns: 500 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// requireProxyV2 in front of a real HTTPS server

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;
if (!hasOpenssl && process.env.CI)
  throw new Error('openssl not installed: .ci/run must install the Debian package `openssl`');

describe.skipIf(!hasOpenssl)('requireProxyV2', () => {
  let dir: string;
  let cert: Buffer;
  let key: Buffer;
  const servers: Server[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'proxy-tls-'));
    await withTimeout(
      new Promise<void>((resolve, reject) =>
        execFile(
          'openssl',
          [
            'req',
            '-x509',
            '-newkey',
            'ec',
            '-pkeyopt',
            'ec_paramgen_curve:P-256',
            '-nodes',
            '-subj',
            '/CN=relay.test',
            '-addext',
            'subjectAltName=DNS:relay.test',
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
      'openssl',
    );
    cert = readFileSync(join(dir, 'cert.pem'));
    key = readFileSync(join(dir, 'key.pem'));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  afterEach(async () => {
    for (const s of servers.splice(0)) {
      s.closeAllConnections();
      await closeServer(s);
    }
  });

  /** An HTTPS server that answers every request with the remote address, port and family it sees. */
  async function serve(options: ProxyHeaderOptions = {}): Promise<{ port: number; rejections: string[] }> {
    const rejections: string[] = [];
    const server = createHttpsServer({ cert, key }, (req, res) => {
      res.end(`${req.socket.remoteAddress} ${req.socket.remotePort} ${req.socket.remoteFamily}`);
    });
    requireProxyV2(server, { timeoutMs: 300, onReject: (r) => rejections.push(r), ...options });
    servers.push(server as unknown as Server);
    const { port } = await listen(server as unknown as Server, '127.0.0.1', 0);
    return { port, rejections };
  }

  type Delivery = 'with the ClientHello' | 'in its own write' | 'one byte at a time';

  /** A TLS request behind `proxyHeader`, delivered as asked; resolves with the response body. */
  function proxiedRequest(port: number, proxyHeader: Buffer, delivery: Delivery): Promise<string> {
    return withTimeout(
      new Promise((resolve, reject) => {
        const tcp = netConnect({ host: '127.0.0.1', port }, async () => {
          let prefix: Buffer | null = null;
          if (delivery === 'with the ClientHello') prefix = proxyHeader;
          else if (delivery === 'in its own write') {
            tcp.write(proxyHeader);
            await sleep(20);
          } else {
            for (const b of proxyHeader) {
              tcp.write(Buffer.from([b]));
              await sleep(1);
            }
          }
          // A JS stream between TLS and TCP, so the first TLS write (the ClientHello) can carry
          // the header in the same segment, as load balancers send it.
          const wire = new Duplex({
            write(chunk: Buffer, _encoding, callback) {
              const data = prefix === null ? chunk : Buffer.concat([prefix, chunk]);
              prefix = null;
              tcp.write(data, callback);
            },
            read() {
              tcp.resume();
            },
            final(callback) {
              tcp.end();
              callback();
            },
          });
          tcp.on('data', (c: Buffer) => {
            if (!wire.push(c)) tcp.pause();
          });
          tcp.on('end', () => wire.push(null));
          const tls = tlsConnect({ socket: wire, servername: 'relay.test', ca: cert }, () => tls.write(HTTP_GET));
          let data = '';
          tls.setEncoding('utf8').on('data', (c: string) => (data += c));
          tls.on('end', () => resolve(body(data)));
          tls.on('error', reject);
        });
        tcp.on('error', reject);
      }),
      5_000,
      `TLS request (header ${delivery})`,
    );
  }

  const deliveries: Delivery[] = ['with the ClientHello', 'in its own write', 'one byte at a time'];
  it.each(deliveries)('TCP4 header %s: the request sees the header source', async (delivery) => {
    const s = await serve();
    expect(await proxiedRequest(s.port, header({ src: '203.0.113.77', srcPort: 1234 }), delivery)).toBe(
      '203.0.113.77 1234 IPv4',
    );
    expect(s.rejections).toEqual([]);
  });

  it.each(deliveries)('TCP6 header with TLVs %s: the request sees the header source', async (delivery) => {
    const s = await serve();
    const h = header({
      family: TCP6,
      src: '2001:db8:1::77',
      srcPort: 4321,
      tlv: Buffer.from([0x04, 0x00, 0x01, 0x00]),
    });
    expect(await proxiedRequest(s.port, h, delivery)).toBe('2001:db8:1::77 4321 IPv6');
  });

  it.each<[string, Buffer]>([
    ['a v1 text header', Buffer.concat([V1_HEADER, HTTP_GET])],
    ['LOCAL', Buffer.concat([header({ versionCommand: LOCAL }), HTTP_GET])],
    ['LOCAL/UNSPEC (a health check)', Buffer.concat([header({ versionCommand: LOCAL, family: UNSPEC }), HTTP_GET])],
    ['UNSPEC', Buffer.concat([header({ family: UNSPEC }), HTTP_GET])],
    ['UDP4', Buffer.concat([header({ family: UDP4 }), HTTP_GET])],
    ['UDP6', Buffer.concat([header({ family: UDP6 }), HTTP_GET])],
    ['UNIX stream', Buffer.concat([header({ family: UNIX_STREAM }), HTTP_GET])],
    ['UNIX datagram', Buffer.concat([header({ family: UNIX_DGRAM }), HTTP_GET])],
    ['garbage', Buffer.from('\x00\x01\x02 definitely not a header \r\n\r\n')],
    ['no header, a plain HTTP request', HTTP_GET],
    ['a header declaring 65535 bytes', header({ length: 65535 }).subarray(0, 16)],
    ['a short address block', Buffer.concat([header({ length: 4 }).subarray(0, 20), HTTP_GET])],
  ])('%s: closed, zero bytes written', async (_name, bytes) => {
    const s = await serve();
    const r = await exchange(s.port, [bytes]);
    expect(r.bytes).toBe(0);
    expect(r.closedAfterMs).toBeLessThan(250); // decided on the bytes, not by the timeout
    expect(s.rejections).toHaveLength(1);
    expect(s.rejections[0]).not.toBe('timeout');
  });

  it('a real TLS ClientHello without a header: closed, zero bytes written (no ServerHello, no alert)', async () => {
    const s = await serve();
    const hello = await captureClientHello();
    expect(hello[0]).toBe(0x16); // a TLS handshake record
    const r = await exchange(s.port, [hello]);
    expect(r.bytes).toBe(0);
    expect(s.rejections).toEqual(['bad_signature']);
  });

  it('a truncated header: closed at the timeout, zero bytes written', async () => {
    const s = await serve();
    const r = await exchange(s.port, [header().subarray(0, 20)]);
    expect(r.bytes).toBe(0);
    expect(r.closedAfterMs).toBeGreaterThanOrEqual(280);
    expect(s.rejections).toEqual(['timeout']);
  });

  it('a truncated header followed by the client closing its side: closed, zero bytes', async () => {
    const s = await serve();
    const r = await withTimeout(
      new Promise<{ bytes: number }>((resolve) => {
        let bytes = 0;
        const socket = netConnect({ host: '127.0.0.1', port: s.port }, () => socket.end(header().subarray(0, 10)));
        socket.on('data', (c: Buffer) => (bytes += c.length));
        socket.on('error', () => {});
        socket.on('close', () => resolve({ bytes }));
      }),
      5_000,
      'close',
    );
    expect(r.bytes).toBe(0);
    expect(s.rejections).toEqual(['closed']);
  });

  it('a late header (after the timeout): closed before it arrives, zero bytes written', async () => {
    const s = await serve();
    const r = await withTimeout(
      new Promise<{ bytes: number; closedAfterMs: number }>((resolve) => {
        const started = Date.now();
        let bytes = 0;
        const socket = netConnect({ host: '127.0.0.1', port: s.port }, () => {
          setTimeout(() => {
            if (!socket.destroyed) socket.write(Buffer.concat([header(), HTTP_GET]));
          }, 500);
        });
        socket.on('data', (c: Buffer) => (bytes += c.length));
        socket.on('error', () => {});
        socket.on('close', () => resolve({ bytes, closedAfterMs: Date.now() - started }));
      }),
      5_000,
      'close',
    );
    expect(r.bytes).toBe(0);
    expect(r.closedAfterMs).toBeLessThan(500);
    expect(s.rejections).toEqual(['timeout']);
  });

  it(`the default timeout is ${PROXY_HEADER_TIMEOUT_MS} ms`, async () => {
    const s = await serve({ timeoutMs: undefined });
    const r = await exchange(s.port, [], 0, PROXY_HEADER_TIMEOUT_MS + 3_000);
    expect(r.bytes).toBe(0);
    expect(r.closedAfterMs).toBeGreaterThanOrEqual(PROXY_HEADER_TIMEOUT_MS - 50);
    expect(r.closedAfterMs).toBeLessThan(PROXY_HEADER_TIMEOUT_MS + 1_500);
  }, 15_000);

  it('stalled connections do not delay accepting or serving others', async () => {
    const s = await serve({ timeoutMs: 3_000 });
    const stalled: Socket[] = [];
    for (let i = 0; i < 50; i++) {
      const socket = netConnect({ host: '127.0.0.1', port: s.port });
      socket.on('error', () => {});
      stalled.push(socket);
    }
    try {
      await sleep(50);
      const started = Date.now();
      expect(await proxiedRequest(s.port, header({ src: '198.51.100.7' }), 'with the ClientHello')).toBe(
        '198.51.100.7 40000 IPv4',
      );
      expect(Date.now() - started).toBeLessThan(1_000);
    } finally {
      for (const socket of stalled) socket.destroy();
    }
  });
});

/** Connects, writes each chunk (with a pause between), returns all bytes until the server closed. */
function exchange(
  port: number,
  chunks: Buffer[],
  pauseMs = 0,
  timeoutMs = 5_000,
): Promise<{ data: string; bytes: number; closedAfterMs: number }> {
  return withTimeout(
    new Promise((resolve) => {
      const started = Date.now();
      const received: Buffer[] = [];
      const socket: Socket = netConnect({ host: '127.0.0.1', port }, async () => {
        for (const chunk of chunks) {
          if (socket.destroyed) break;
          socket.write(chunk);
          if (pauseMs > 0) await sleep(pauseMs);
        }
      });
      socket.on('data', (c: Buffer) => received.push(c));
      socket.on('error', () => {});
      socket.on('close', () => {
        const all = Buffer.concat(received);
        resolve({ data: all.toString('utf8'), bytes: all.length, closedAfterMs: Date.now() - started });
      });
    }),
    timeoutMs,
    'server to close',
  );
}

function body(response: string): string {
  return response.slice(response.indexOf('\r\n\r\n') + 4);
}

/** The first bytes a TLS client sends (its ClientHello), captured with a local TCP server. */
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
      server.on('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const port = (server.address() as { port: number }).port;
        tlsConnect({ host: '127.0.0.1', port, servername: 'relay.test' }).on('error', () => {});
      });
    }),
    5_000,
    'a ClientHello',
  );
}
