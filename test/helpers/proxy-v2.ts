// PROXY protocol v2 headers as a load balancer writes them, built independently of
// src/http/proxy-protocol.ts's parser (only the 12-byte signature is shared), for the parser's unit
// tests and for the relay behind a TLS pass-through balancer.

import { PROXY_V2_SIGNATURE } from '../../src/http/proxy-protocol.js';

/** Address families (high nibble) and transports (low nibble) of byte 13. */
export const TCP4 = 0x11;
export const UDP4 = 0x12;
export const TCP6 = 0x21;
export const UDP6 = 0x22;
export const UNIX_STREAM = 0x31;
export const UNIX_DGRAM = 0x32;
export const UNSPEC = 0x00;
/** Version 2 and command (byte 12). */
export const PROXY = 0x21;
export const LOCAL = 0x20;

/** The 16 bytes of an IPv6 address in text form ('2001:db8::9', '::1', full or compressed). */
export function ipv6Bytes(text: string): Buffer {
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

export interface HeaderSpec {
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

/** A PROXY v2 header: by default PROXY over TCP4 from 203.0.113.9:40000 to 192.0.2.1:443 (TCP6:
 * 2001:db8::9 to 2001:db8::1). */
export function proxyV2Header(spec: HeaderSpec = {}): Buffer {
  const family = spec.family ?? TCP4;
  let block: Buffer;
  if (family === TCP6 || family === UDP6) {
    block = Buffer.alloc(36);
    ipv6Bytes(spec.src ?? '2001:db8::9').copy(block, 0);
    ipv6Bytes(spec.dst ?? '2001:db8::1').copy(block, 16);
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
