// Listener addresses: Go's net.SplitHostPort with the relay's rules for the public listeners and
// the loopback-only metrics listener, and the one way an address is written back.

import { isIPv4, isIPv6 } from 'node:net';
import type { ListenAddress } from './types.js';
import { HOSTNAME_RE, type Check } from './values.js';

export const METRICS_LISTEN_FIX =
  'use a loopback IP literal with a non-zero port, e.g. 127.0.0.1:9090 or [::1]:9090, or --metrics-listen="" to disable';

const PORT_RE = /^[0-9]+$/;

interface SplitAddress {
  host: string;
  port: number;
  bracketed: boolean;
}

/** net.SplitHostPort plus the listener rules of docs/operations.md, "Flags" (port 1-65535, decimal). */
function splitHostPort(s: string): Check<SplitAddress> {
  if (s === '') return { ok: false, reason: 'address is empty' };
  let host: string;
  let portStr: string;
  let bracketed = false;
  if (s[0] === '[') {
    const end = s.indexOf(']');
    if (end < 0) return { ok: false, reason: "missing ']' in address" };
    host = s.slice(1, end);
    const after = s.slice(end + 1);
    if (host.includes('[') || after.includes('[') || after.includes(']')) {
      return { ok: false, reason: 'unexpected bracket in address' };
    }
    if (after === '') return { ok: false, reason: 'missing port in address' };
    if (after[0] !== ':') return { ok: false, reason: "unexpected characters after ']' in address" };
    portStr = after.slice(1);
    bracketed = true;
  } else {
    const last = s.lastIndexOf(':');
    if (last < 0) return { ok: false, reason: 'missing port in address' };
    host = s.slice(0, last);
    portStr = s.slice(last + 1);
    if (host.includes(':')) {
      return { ok: false, reason: 'too many colons in address (write IPv6 hosts in brackets, e.g. [::1]:9090)' };
    }
    if (host.includes('[') || host.includes(']')) return { ok: false, reason: 'unexpected bracket in address' };
  }
  if (portStr === '') return { ok: false, reason: 'port is empty' };
  if (!PORT_RE.test(portStr)) return { ok: false, reason: 'port must be a decimal number from 1 to 65535' };
  const port = Number(portStr);
  if (port === 0) return { ok: false, reason: 'port 0 is not allowed (the relay must bind a known port)' };
  if (port > 65535) return { ok: false, reason: 'port out of range (must be 1 to 65535)' };
  return { ok: true, value: { host, port, bracketed } };
}

/** A public listener address: host may be '', an IPv4 literal, a bracketed IPv6 literal or a DNS name. */
export function checkListenAddress(s: string): Check<ListenAddress> {
  const split = splitHostPort(s);
  if (!split.ok) return split;
  const { host, port, bracketed } = split.value;
  if (bracketed) {
    if (!isIPv6(host)) return { ok: false, reason: 'brackets must hold an IPv6 literal' };
  } else if (host !== '' && !isIPv4(host)) {
    const labels = host.replace(/\.$/, '').split('.');
    if (/^[0-9]+$/.test(labels[labels.length - 1]!)) {
      // "010.0.0.1" or "127.1": the system resolver might read it as an (octal/short) IPv4 address.
      return { ok: false, reason: 'host is not a valid IPv4 address (four decimal octets, no leading zeros)' };
    }
    if (host.length > 253 || !HOSTNAME_RE.test(host)) {
      return { ok: false, reason: 'host is not an IP literal or a valid hostname' };
    }
  }
  return { ok: true, value: { host, port } };
}

/** 16 bytes of an IPv6 literal (no zone), or null. */
function ipv6Bytes(addr: string): number[] | null {
  if (!isIPv6(addr) || addr.includes('%')) return null;
  let text = addr;
  let tail: number[] = [];
  const lastColon = text.lastIndexOf(':');
  const lastPart = text.slice(lastColon + 1);
  if (lastPart.includes('.')) {
    if (!isIPv4(lastPart)) return null;
    tail = lastPart.split('.').map(Number);
    text = text.slice(0, lastColon + 1) + '0:0'; // placeholder groups, replaced below
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const parse = (h: string): number[] => (h === '' ? [] : h.split(':').map((g) => parseInt(g, 16)));
  const head = parse(halves[0]!);
  const rest = halves.length === 2 ? parse(halves[1]!) : [];
  const fill = halves.length === 2 ? 8 - head.length - rest.length : 0;
  const groups = [...head, ...new Array<number>(fill).fill(0), ...rest];
  if (groups.length !== 8 || groups.some((g) => !Number.isInteger(g) || g < 0 || g > 0xffff)) return null;
  const bytes = groups.flatMap((g) => [g >> 8, g & 0xff]);
  if (tail.length === 4) bytes.splice(12, 4, ...tail);
  return bytes;
}

/**
 * --metrics-listen: an IPv4 literal in 127.0.0.0/8 or the bracketed IPv6 literal ::1 (any spelling
 * of it, e.g. [0:0:0:0:0:0:0:1]), with a port 1-65535. Hostnames (localhost included) are refused:
 * what they resolve to can change between this check and the bind.
 *
 * IPv4-mapped IPv6 ([::ffff:127.0.0.1]) is refused although Go's IP.IsLoopback() says true: bound
 * through an AF_INET6 socket, whether it accepts anything depends on dual-stack settings
 * (IPV6_V6ONLY, net.ipv6.bindv6only, platforms without mapped addresses), so it is not a plain
 * loopback literal with one meaning; 127.0.0.1 says the same thing unambiguously. IPv6 zones and
 * bracketed IPv4 are refused for the same reason (one canonical spelling per address family).
 */
export function checkMetricsListen(s: string): Check<ListenAddress> {
  const split = splitHostPort(s);
  if (!split.ok) return split;
  const { host, port, bracketed } = split.value;
  if (host === '') return { ok: false, reason: 'host is empty (would listen on all interfaces)' };
  if (bracketed) {
    if (isIPv4(host)) return { ok: false, reason: 'brackets are only for IPv6 literals' };
    if (!isIPv6(host)) return { ok: false, reason: 'host is not an IP literal' };
    if (host.includes('%')) return { ok: false, reason: 'IPv6 zones are not allowed' };
    const b = ipv6Bytes(host);
    if (b === null) return { ok: false, reason: 'host is not an IP literal' };
    if (b.slice(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) {
      return {
        ok: false,
        reason: 'IPv4-mapped IPv6 addresses are not allowed (write the IPv4 literal, e.g. 127.0.0.1)',
      };
    }
    if (!(b.slice(0, 15).every((x) => x === 0) && b[15] === 1)) {
      return { ok: false, reason: 'not a loopback address (must be in 127.0.0.0/8 or ::1)' };
    }
    return { ok: true, value: { host, port } };
  }
  if (!isIPv4(host)) {
    return {
      ok: false,
      reason:
        'host is not an IP literal (hostnames, localhost included, are refused: DNS can change between check and bind)',
    };
  }
  if (!host.startsWith('127.')) return { ok: false, reason: 'not a loopback address (must be in 127.0.0.0/8 or ::1)' };
  return { ok: true, value: { host, port } };
}

/** Renders a ListenAddress the way it is written on the command line (`:443`, `[::1]:9090`). */
export function formatListenAddress(a: ListenAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
