// Which rate-limit bucket an address counts against (docs/operations.md "Rate-limit sizing").
//
// An IPv6 subscriber is routinely given a whole /64 and can pick any of its 2^64 addresses, so
// keying by the full address would give it a fresh burst per address and let it grow the bucket
// table at will: IPv6 addresses are keyed by their /64. IPv4-mapped IPv6 addresses (what a
// dual-stack listener reports for IPv4 peers) count as their IPv4 address. Anything that is not
// an IP literal (a proxy's X-Forwarded-For can hold anything) is its own key, as before.

import { isIPv4, isIPv6 } from 'node:net';

/** Prefix length IPv6 addresses are keyed by. */
export const IPV6_PREFIX_BITS = 64;

export function rateLimitKey(address: string): string {
  if (isIPv4(address)) return address;
  const percent = address.indexOf('%');
  const bare = percent < 0 ? address : address.slice(0, percent);
  if (!isIPv6(bare)) return address;
  const words = ipv6Words(bare);
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) {
    return `${words[6]! >> 8}.${words[6]! & 0xff}.${words[7]! >> 8}.${words[7]! & 0xff}`;
  }
  return `${words
    .slice(0, IPV6_PREFIX_BITS / 16)
    .map((w) => w.toString(16))
    .join(':')}::/${IPV6_PREFIX_BITS}`;
}

/** The eight 16-bit words of a valid IPv6 literal (node:net checked it). */
function ipv6Words(address: string): number[] {
  let text = address.toLowerCase();
  // A trailing dotted IPv4 part is two words.
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const [a, b, c, d] = tail.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const double = text.indexOf('::');
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((w) => Number.parseInt(w, 16)));
  if (double < 0) return parse(text);
  const head = parse(text.slice(0, double));
  const rest = parse(text.slice(double + 2));
  return [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest];
}
