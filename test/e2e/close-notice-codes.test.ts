// Close notices after ws itself closed a phone for a protocol violation carry the code the relay's library sent
// (docs/decisions.md, "Close notices carry the code the relay sent; 1005 and 1001 otherwise"), and the close counts
// under the matching reason.

import { describe, expect, it } from 'vitest';
import { connectBinary, connectPhone, phoneConnId, useRelays } from '../helpers/relays.js';
import { closedCell } from '../helpers/scrape.js';
import { waitFor } from '../helpers/wait.js';

const { boot } = useRelays();

describe('close notices for library-initiated closes', () => {
  it('an oversized phone message: phone gets 1009, the binary a notice with 1009', async () => {
    const relay = await boot();
    const binary = await connectBinary(relay, 'cn-1009');
    const phone = await connectPhone(relay, 'cn-1009');
    const connId = await phoneConnId(phone, binary);
    phone.send(Buffer.alloc(262_145, 0x20));
    expect((await phone.waitClose()).code).toBe(1009);
    expect(await binary.message(2)).toBe(`{"conn_id":"${connId}","close_code":1009}`);
    // The notice goes out at the close frame; the close is counted when the socket is gone.
    await waitFor(
      async () => (await relay.metric(closedCell('client', 'too_big_1009'))) === 1,
      3_000,
      'connections_closed{client,too_big_1009} = 1',
    );
  });

  it('invalid UTF-8 in a text frame: phone gets 1007, the binary a notice with 1007', async () => {
    const relay = await boot();
    const binary = await connectBinary(relay, 'cn-1007');
    const phone = await connectPhone(relay, 'cn-1007');
    const connId = await phoneConnId(phone, binary);
    // ws validates outgoing text only when asked; send raw bytes as a text frame.
    phone.ws.send(Buffer.from([0x22, 0xff, 0xfe, 0x22]), { binary: false });
    expect((await phone.waitClose()).code).toBe(1007);
    expect(await binary.message(2)).toBe(`{"conn_id":"${connId}","close_code":1007}`);
    await waitFor(
      async () => (await relay.metric(closedCell('client', 'invalid_payload_1007'))) === 1,
      3_000,
      'connections_closed{client,invalid_payload_1007} = 1',
    );
  });
});
