// conn_ids (docs/protocol.md, "Envelopes"): role prefix, the server-id verbatim, and 32 bits from a
// CSPRNG as 8 lowercase hex characters. No uniqueness check: collisions among at most a few
// phones per server-id are negligible.
//
// The random bits come from a pool filled 4 KiB at a time (1,024 ids per call into the CSPRNG):
// one randomBytes call per connection was about 4 % of the relay's CPU while accepting upgrades.

import { randomFillSync } from 'node:crypto';

/** Random bytes drawn from the CSPRNG at once. */
const RANDOM_POOL_BYTES = 4096;
/** Random bytes per conn_id (8 hex characters). */
const ID_RANDOM_BYTES = 4;

const pool = Buffer.alloc(RANDOM_POOL_BYTES);
let used = RANDOM_POOL_BYTES;

/** 8 lowercase hex characters; every pool byte is used once. */
function randomHex(): string {
  if (used + ID_RANDOM_BYTES > RANDOM_POOL_BYTES) {
    randomFillSync(pool);
    used = 0;
  }
  const hex = pool.toString('hex', used, used + ID_RANDOM_BYTES);
  used += ID_RANDOM_BYTES;
  return hex;
}

// Joined, not concatenated: `join` makes one flat string, where `+` or a template leaves a chain
// of V8 cons strings (about 40 B more per connection for as long as the connection lives).
export function binaryConnId(serverId: string): string {
  return ['server-', serverId, '-', randomHex()].join('');
}

export function phoneConnId(serverId: string): string {
  return ['client-', serverId, '-', randomHex()].join('');
}
