// A message dribbled in tiny pieces (issue found by session 6's adversarial review): ws keeps
// every socket read of an unfinished frame, and every fragment of an unfinished message, as its
// own Buffer until the message completes. One 256 KiB message sent a byte per TCP segment was
// 262,144 Buffers (~150-300 B each): 16-80 MiB pinned per connection against the documented
// "up to 256 KiB of a message being received", and 8 such connections killed a relay with a
// 128 MiB heap. The relay now merges the pieces of an unfinished message as they come, so what it
// holds is the message's bytes plus a bounded number of pieces. Real relay over 127.0.0.1, raw
// TCP client, heap + ArrayBuffer memory after a full GC.

import { setImmediate as tick } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { figure } from '../helpers/figures.js';
import { connectBinary, phoneHeaders, useRelays } from '../helpers/relays.js';
import { MiB, settledHeapAndBuffers } from '../helpers/resources.js';
import { clientFrame, RawWs } from '../helpers/ws-frames.js';
import { waitFor } from '../helpers/wait.js';

const { boot, track } = useRelays();

/** Writes `bytes` one at a time, letting the relay read each on its own. */
async function dribble(phone: RawWs, bytes: Buffer): Promise<void> {
  phone.socket.setNoDelay(true);
  for (let i = 0; i < bytes.length; i++) {
    phone.write(bytes.subarray(i, i + 1));
    await tick();
  }
}

describe('a message dribbled in tiny pieces', () => {
  it('one frame, a byte per TCP segment: bounded memory while unfinished, delivered whole when it completes', async () => {
    const r = await boot();
    const binary = await connectBinary(r, 'dribble-bytes');
    const phone = track(await RawWs.open(r.port, '/v1/client', phoneHeaders('dribble-bytes')));
    await waitFor(() => r.relay.metrics.phonesSinceBoot === 1, 3_000, 'phone registration');

    const PAYLOAD = 40_000;
    const text = `"${'a'.repeat(PAYLOAD - 2)}"`;
    const frame = clientFrame(0x1, Buffer.from(text));
    const before = settledHeapAndBuffers();
    const HELD_BACK = 1_000;
    await dribble(phone, frame.subarray(0, frame.length - HELD_BACK));
    const grown = settledHeapAndBuffers() - before;
    figure(
      'dribble',
      `one unfinished 40 KB frame in ~${frame.length - HELD_BACK} reads: ${(grown / MiB).toFixed(2)} MiB held`,
    );
    // Before: ~39,000 Buffers, 6-12 MiB. The frame's own bytes are 40 KB.
    expect(grown).toBeLessThan(1 * MiB);

    phone.write(frame.subarray(frame.length - HELD_BACK));
    const envelope = await binary.message(1, 5_000);
    const connId = (JSON.parse(envelope) as { conn_id: string }).conn_id;
    expect(envelope).toBe(`{"conn_id":"${connId}","frame":${text}}`);
    expect(phone.closeFrame()).toBeUndefined();
  });

  it('one message in 16,000 fragments of 4 bytes, one per TCP segment: bounded memory, delivered whole', async () => {
    const r = await boot();
    const binary = await connectBinary(r, 'dribble-frags');
    const phone = track(await RawWs.open(r.port, '/v1/client', phoneHeaders('dribble-frags')));
    await waitFor(() => r.relay.metrics.phonesSinceBoot === 1, 3_000, 'phone registration');
    phone.socket.setNoDelay(true);

    const FRAGMENTS = 16_000;
    const text = `"${'b'.repeat(FRAGMENTS * 4 - 2)}"`;
    const bytes = Buffer.from(text);
    const before = settledHeapAndBuffers();
    for (let i = 0; i < FRAGMENTS - 1; i++) {
      phone.write(clientFrame(i === 0 ? 0x1 : 0x0, bytes.subarray(i * 4, i * 4 + 4), { fin: false }));
      await tick();
    }
    const grown = settledHeapAndBuffers() - before;
    figure('dribble', `one unfinished message in ${FRAGMENTS - 1} fragments: ${(grown / MiB).toFixed(2)} MiB held`);
    // Before: one Buffer per fragment, each a view of its own socket read: ~3.5 MiB.
    expect(grown).toBeLessThan(1 * MiB);

    phone.write(clientFrame(0x0, bytes.subarray((FRAGMENTS - 1) * 4)));
    const envelope = await binary.message(1, 5_000);
    const connId = (JSON.parse(envelope) as { conn_id: string }).conn_id;
    expect(envelope).toBe(`{"conn_id":"${connId}","frame":${text}}`);
    expect(phone.closeFrame()).toBeUndefined();
  });
});
