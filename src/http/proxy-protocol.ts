// PROXY protocol v2 in front of the HTTPS listener (docs/operations.md, "PROXY protocol v2 (`--https-proxy-protocol`)";
// docs/decisions.md, "PROXY v2 details").
//
// Every accepted TCP connection must start with a v2 header whose command is PROXY and whose
// source is a TCP address (IPv4 or IPv6), complete within PROXY_HEADER_TIMEOUT_MS. Anything else —
// a v1 text header, LOCAL, UNSPEC, UDP, UNIX, a malformed, oversized, truncated or late header, a
// TLS ClientHello without a header — closes the connection with zero bytes written: no handler
// runs and the socket's own peer is never used as a fallback. The header's source address becomes
// the connection's remote address (what the rate limiter and the logs see).
//
// Trust is by shape, not by sender: any peer that can reach the port can forge a header, so the
// port must be reachable only from the load balancer (see docs/operations.md).

import type { Socket } from 'node:net';
import type { Server as TlsServer } from 'node:tls';

/** The 12-byte v2 signature: \r\n\r\n\0\r\nQUIT\n */
export const PROXY_V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** Signature, version/command, family/protocol and the 2-byte length. */
export const PROXY_V2_PREFIX_BYTES = 16;
/** Largest address block (addresses + TLVs) accepted. The wire allows 65535; load balancers send
 * the addresses plus a few small TLVs (a few dozen bytes). 4 KiB leaves room for every TLV a
 * load balancer in front of a TLS-terminating backend sends, and bounds what a stranger can make
 * the relay buffer before it decides. */
export const PROXY_V2_MAX_ADDRESS_BLOCK = 4096;
/** The whole header must have arrived this long after accept. */
export const PROXY_HEADER_TIMEOUT_MS = 5_000;

/** Version 2 (high nibble) with command PROXY (low nibble 1). 0x20 is LOCAL. */
const VERSION_COMMAND_PROXY = 0x21;
const FAMILY_TCP4 = 0x11;
const FAMILY_TCP6 = 0x21;
const TCP4_ADDRESS_BYTES = 12;
const TCP6_ADDRESS_BYTES = 36;

export interface ProxiedPeer {
  family: 'IPv4' | 'IPv6';
  /** Source (client) address, formatted as Node formats remote addresses. */
  sourceAddress: string;
  sourcePort: number;
  destinationAddress: string;
  destinationPort: number;
}

export type ProxyRejection =
  | 'bad_signature'
  | 'bad_version'
  | 'local_command'
  | 'bad_command'
  | 'unsupported_family'
  | 'short_address_block'
  | 'header_too_large';

export type ProxyParse =
  /** More bytes are needed; nothing wrong so far. */
  | { kind: 'incomplete' }
  | { kind: 'reject'; reason: ProxyRejection }
  /** `length` bytes of `buf` are the header; the rest belongs to the proxied stream. */
  | { kind: 'ok'; peer: ProxiedPeer; length: number };

/**
 * Parses a PROXY v2 header from the start of `buf`. Decides as early as the bytes allow: a byte
 * that differs from the signature (a v1 "PROXY " line, a TLS record) rejects at once; a declared
 * length over the cap rejects before the block arrives. TLVs after the addresses are skipped.
 */
export function parseProxyV2(buf: Buffer): ProxyParse {
  const sigBytes = Math.min(buf.length, PROXY_V2_SIGNATURE.length);
  for (let i = 0; i < sigBytes; i++) {
    if (buf[i] !== PROXY_V2_SIGNATURE[i]) return { kind: 'reject', reason: 'bad_signature' };
  }
  if (buf.length < PROXY_V2_SIGNATURE.length + 1) return { kind: 'incomplete' };
  const versionCommand = buf[12]!;
  if (versionCommand >> 4 !== 2) return { kind: 'reject', reason: 'bad_version' };
  if (versionCommand === 0x20) return { kind: 'reject', reason: 'local_command' };
  if (versionCommand !== VERSION_COMMAND_PROXY) return { kind: 'reject', reason: 'bad_command' };
  if (buf.length < 14) return { kind: 'incomplete' };
  const family = buf[13]!;
  if (family !== FAMILY_TCP4 && family !== FAMILY_TCP6) return { kind: 'reject', reason: 'unsupported_family' };
  if (buf.length < PROXY_V2_PREFIX_BYTES) return { kind: 'incomplete' };
  const blockLength = buf.readUInt16BE(14);
  if (blockLength > PROXY_V2_MAX_ADDRESS_BLOCK) return { kind: 'reject', reason: 'header_too_large' };
  const needed = family === FAMILY_TCP4 ? TCP4_ADDRESS_BYTES : TCP6_ADDRESS_BYTES;
  if (blockLength < needed) return { kind: 'reject', reason: 'short_address_block' };
  const length = PROXY_V2_PREFIX_BYTES + blockLength;
  if (buf.length < length) return { kind: 'incomplete' };
  const a = PROXY_V2_PREFIX_BYTES;
  let peer: ProxiedPeer;
  if (family === FAMILY_TCP4) {
    peer = {
      family: 'IPv4',
      sourceAddress: formatIPv4(buf, a),
      destinationAddress: formatIPv4(buf, a + 4),
      sourcePort: buf.readUInt16BE(a + 8),
      destinationPort: buf.readUInt16BE(a + 10),
    };
  } else {
    const source = formatIPv6(buf, a);
    const destination = formatIPv6(buf, a + 16);
    peer = {
      // An IPv4-mapped source (::ffff:a.b.c.d) counts as that IPv4 client, one rate-limit key per
      // client whichever family the load balancer used (Go's net.IP prints it the same way).
      family: source.includes(':') ? 'IPv6' : 'IPv4',
      sourceAddress: source,
      destinationAddress: destination,
      sourcePort: buf.readUInt16BE(a + 32),
      destinationPort: buf.readUInt16BE(a + 34),
    };
  }
  return { kind: 'ok', peer, length };
}

function formatIPv4(buf: Buffer, at: number): string {
  return `${buf[at]}.${buf[at + 1]}.${buf[at + 2]}.${buf[at + 3]}`;
}

/** RFC 5952 text (lowercase, longest run of two or more zero groups as "::", first run on a
 * tie), like Node's remoteAddress. An IPv4-mapped address is written as the bare IPv4 address. */
export function formatIPv6(buf: Buffer, at: number): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(at + i * 2));
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) return formatIPv4(buf, at + 12);
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestLength < 2) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

export interface ProxyHeaderOptions {
  /** Default PROXY_HEADER_TIMEOUT_MS. */
  timeoutMs?: number;
  /** Called once per refused connection (after the socket was destroyed), e.g. for a counter. */
  onReject?(reason: ProxyRejection | 'timeout' | 'closed' | 'no_peer_override'): void;
}

/**
 * Makes `server` (a TLS or HTTPS server) require a PROXY v2 header on every connection. The
 * server's own 'connection' listener (the TLS handshake) is moved behind the header check and runs,
 * unchanged, with the header stripped and the header's source as the socket's remote address.
 * Bytes that arrived with the header (typically the ClientHello) are put back on the socket, where
 * the TLS layer picks them up. Each connection is read independently, so a stalled header never
 * delays accepting or serving others.
 *
 * TLS servers only: a plain HTTP server reads from the socket's handle directly and would not see
 * the bytes put back. Call it after the server is built and before it accepts; listeners added
 * for 'connection' later run before the header was read.
 */
export function requireProxyV2(server: TlsServer, options: ProxyHeaderOptions = {}): void {
  const timeoutMs = options.timeoutMs ?? PROXY_HEADER_TIMEOUT_MS;
  const inner = server.listeners('connection') as ((socket: Socket) => void)[];
  server.removeAllListeners('connection');
  server.on('connection', (socket: Socket) => {
    readProxyHeader(socket, timeoutMs, (result) => {
      if (result.kind !== 'ok') {
        socket.destroy();
        options.onReject?.(result.reason);
        return;
      }
      if (!setRemotePeer(socket, result.peer)) {
        socket.destroy();
        options.onReject?.('no_peer_override');
        return;
      }
      if (result.rest.length > 0) socket.unshift(result.rest);
      for (const listener of inner) listener.call(server, socket);
    });
  });
}

type HeaderResult =
  | { kind: 'ok'; peer: ProxiedPeer; rest: Buffer }
  | { kind: 'fail'; reason: ProxyRejection | 'timeout' | 'closed' };

/** Reads until the header is complete or refused, the timeout fires or the peer goes away. On
 * success the socket is paused with no listener of ours left on it. */
function readProxyHeader(socket: Socket, timeoutMs: number, done: (result: HeaderResult) => void): void {
  let buffered: Buffer = Buffer.alloc(0);
  let finished = false;
  const finish = (result: HeaderResult): void => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('end', onClosed);
    socket.off('close', onClosed);
    if (result.kind === 'ok') {
      socket.pause();
      socket.off('error', onError);
      // The TLS layer takes over the socket's handle; an error on the raw socket object after
      // that must not crash the process.
      socket.on('error', ignoreError);
    }
    done(result);
  };
  const onData = (chunk: Buffer): void => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    const parsed = parseProxyV2(buffered);
    if (parsed.kind === 'incomplete') return;
    if (parsed.kind === 'reject') finish({ kind: 'fail', reason: parsed.reason });
    else finish({ kind: 'ok', peer: parsed.peer, rest: buffered.subarray(parsed.length) });
  };
  const onClosed = (): void => finish({ kind: 'fail', reason: 'closed' });
  const onError = (): void => finish({ kind: 'fail', reason: 'closed' });
  const timer = setTimeout(() => finish({ kind: 'fail', reason: 'timeout' }), timeoutMs);
  timer.unref();
  socket.on('data', onData);
  socket.on('end', onClosed);
  socket.on('close', onClosed);
  socket.on('error', onError);
}

function ignoreError(): void {}

/**
 * Makes `socket` — and a TLS socket later wrapped around it — report the proxied peer as its
 * remote address. A TLS server's socket answers `remoteAddress` by asking the wrapped TCP handle
 * for its peer name (getpeername), so the override goes on that handle, and on the socket itself.
 * Returns false if the socket has no handle to override (then the connection must be refused:
 * the real peer must never stand in for the header's address).
 */
export function setRemotePeer(socket: Socket, peer: ProxiedPeer): boolean {
  const handle = (socket as unknown as { _handle?: { getpeername?: unknown } | null })._handle;
  if (handle === null || handle === undefined || typeof handle.getpeername !== 'function') return false;
  const name = { address: peer.sourceAddress, family: peer.family, port: peer.sourcePort };
  handle.getpeername = (out: Record<string, unknown>): number => {
    out['address'] = name.address;
    out['family'] = name.family;
    out['port'] = name.port;
    return 0;
  };
  // A peer name cached before the override (nothing here reads it, but be sure).
  (socket as unknown as { _peername?: unknown })._peername = { ...name };
  return true;
}
