import { afterEach, describe, expect, it } from 'vitest';
import { connectBinary, connectPhone, phoneConnId, startRelay, type TestRelay } from '../helpers/relays.js';

let relay: TestRelay;
afterEach(async () => relay?.close());

describe('smoke', () => {
  it('routes one frame each way and counts it', async () => {
    relay = await startRelay();
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
