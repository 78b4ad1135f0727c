// conn_ids (docs/protocol.md, "Envelopes"): role prefix, the server-id verbatim, and 32 bits from a
// CSPRNG as 8 lowercase hex characters. No uniqueness check: collisions among at most a few
// phones per server-id are negligible.

import { randomBytes } from 'node:crypto';

export function binaryConnId(serverId: string): string {
  return `server-${serverId}-${randomBytes(4).toString('hex')}`;
}

export function phoneConnId(serverId: string): string {
  return `client-${serverId}-${randomBytes(4).toString('hex')}`;
}
