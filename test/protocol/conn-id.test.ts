// conn_ids (docs/protocol.md): role prefix, the server-id verbatim, 8 lowercase hex characters of
// CSPRNG output; drawn from a refilled pool, so ids across a refill must not repeat the pool.

import { describe, expect, it } from 'vitest';
import { binaryConnId, phoneConnId } from '../../src/protocol/conn-id.js';

describe('conn ids', () => {
  it('have the role prefix, the server-id verbatim and 8 hex characters', () => {
    expect(phoneConnId('srv-ü 1')).toMatch(/^client-srv-ü 1-[0-9a-f]{8}$/);
    expect(binaryConnId('srv')).toMatch(/^server-srv-[0-9a-f]{8}$/);
  });

  it('stay random across pool refills (4,096 ids span four refills)', () => {
    const ids = Array.from({ length: 4096 }, () => phoneConnId('s'));
    // 32 random bits: a handful of collisions among 4,096 is possible, a repeated pool is not.
    expect(new Set(ids).size).toBeGreaterThan(4080);
    expect(ids.slice(0, 1024)).not.toEqual(ids.slice(1024, 2048));
  });
});
