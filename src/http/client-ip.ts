// Which address a request counts against (docs/operations.md, "Behind a TLS-terminating proxy").

import type { IncomingMessage } from 'node:http';
import { firstHeader } from './first-header.js';

/** The connection's remote host, as the socket reports it (no canonicalisation). '' if unknown. */
export function remoteHost(req: IncomingMessage): string {
  return req.socket.remoteAddress ?? '';
}

/** The rate-limit key: the remote host, or with `trustXForwardedFor` the left-most
 * X-Forwarded-For entry (all-or-nothing trust; absent or empty entry falls back to the socket).
 * '' means unattributable, which the limiter always denies. */
export function clientIp(req: IncomingMessage, trustXForwardedFor: boolean): string {
  if (trustXForwardedFor) {
    const xff = firstHeader(req, 'x-forwarded-for');
    if (xff !== undefined) {
      const comma = xff.indexOf(',');
      const first = (comma < 0 ? xff : xff.slice(0, comma)).trim();
      if (first !== '') return first;
    }
  }
  return remoteHost(req);
}
