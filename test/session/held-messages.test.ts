// The store of messages a held-back phone had already sent (src/session/held-messages.ts): every
// message comes out once, in order, with its bytes and opcode, across growth of the store.

import { describe, expect, it } from 'vitest';
import { HeldMessages } from '../../src/session/held-messages.js';

describe('HeldMessages', () => {
  it('hands out every message once, in order, with its bytes and opcode, also after it grew', () => {
    const sent: [string, boolean][] = [];
    for (let i = 0; i < 3_000; i++) sent.push([`{"n":${i}}`.padEnd(1 + (i % 37), ' '), i % 5 === 0]);
    sent.push(['x'.repeat(300_000), true]); // bigger than twice the store
    const held = new HeldMessages(Buffer.from(sent[0]![0]), sent[0]![1]);
    for (const [text, isBinary] of sent.slice(1)) held.push(Buffer.from(text), isBinary);
    expect(held.size).toBe(sent.length);

    const got: [Buffer, boolean][] = [];
    while (held.size > 0) held.shift((data, isBinary) => got.push([data, isBinary]));
    // Views handed out earlier still hold their own bytes.
    expect(got.map(([data, isBinary]) => [data.toString(), isBinary])).toEqual(sent);
  });

  it('takes more after some were handed out, without touching what was handed out', () => {
    const held = new HeldMessages(Buffer.from('a'), false);
    let first: Buffer | undefined;
    held.shift((data) => (first = data));
    for (let i = 0; i < 1_000; i++) held.push(Buffer.from(`m${i}`), false);
    expect(first!.toString()).toBe('a');
    const rest: string[] = [];
    while (held.size > 0) held.shift((data) => rest.push(data.toString()));
    expect(rest).toEqual(Array.from({ length: 1_000 }, (_, i) => `m${i}`));
  });
});
