import { describe, expect, it } from 'vitest';
import { connectBinary, connectPhone, phoneConnId, useRelays } from '../helpers/relays.js';

const { boot } = useRelays();

describe('smoke', () => {
  it('routes one frame each way and counts it', async () => {
    const relay = await boot();
    const binary = await connectBinary(relay, 'srv-1');
    const phone = await connectPhone(relay, 'srv-1');
    const connId = await phoneConnId(phone, binary);
    expect(connId).toMatch(/^client-srv-1-[0-9a-f]{8}$/);
    binary.send(`{"conn_id":"${connId}","frame":{"ok":1}}`);
    expect(await phone.message(1)).toBe('{"ok":1}');
    expect(await relay.metric('pyrycode_relay_frames_forwarded_total{direction="phone_to_binary"}')).toBe(1);
    expect(await relay.metric('pyrycode_relay_frames_forwarded_total{direction="binary_to_phone"}')).toBe(1);
  });
});
