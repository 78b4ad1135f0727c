// Pings faster than the relay can answer them (issue #14.4). ws cuts a peer with 60 automatic pongs
// pending by dropping TCP without a close frame, which looked like the peer's own abrupt drop. The
// relay answers pings itself and closes a flooder with a code of its own: 1008 "too many pings",
// counted as ping_flood. Raw TCP clients send every ping in one write.

import { afterEach, describe, expect, it } from 'vitest';
import { binaryHeaders, connectBinary, phoneHeaders, startRelay, type TestRelay } from '../helpers/relay.js';
import { clientFrame, closedCell, closePayload, RawWs } from '../helpers/reliability.js';
import { waitFor } from '../helpers/wait.js';
import { MAX_PENDING_PONGS } from '../../src/session/peer.js';

let relay: TestRelay | undefined;
const raws: RawWs[] = [];
afterEach(async () => {
  for (const raw of raws.splice(0)) raw.destroy();
  await relay?.close();
  relay = undefined;
});

function pings(count: number): Buffer {
  const frames: Buffer[] = [];
  for (let i = 0; i < count; i++) frames.push(clientFrame(0x9, Buffer.from(`p${i}`)));
  return Buffer.concat(frames);
}

async function rawPhone(r: TestRelay, serverId: string): Promise<RawWs> {
  const before = r.relay.metrics.phonesSinceBoot;
  const phone = await RawWs.open(r.port, '/v1/client', phoneHeaders(serverId));
  raws.push(phone);
  await waitFor(() => r.relay.metrics.phonesSinceBoot > before, 3_000, 'phone registration');
  return phone;
}

describe('ping flood', () => {
  it(`a phone sending ${MAX_PENDING_PONGS + 1} pings in one write is closed 1008 "too many pings"; the binary is told 1008; counted as ping_flood`, async () => {
    const r = await startRelay();
    relay = r;
    const binary = await connectBinary(r, 'ping-flood');
    const phone = await rawPhone(r, 'ping-flood');
    phone.sendText('1');
    const connId = (JSON.parse(await binary.message(1)) as { conn_id: string }).conn_id;

    phone.write(pings(MAX_PENDING_PONGS + 1));
    await waitFor(() => phone.closeFrame(), 3_000, 'close frame from the relay');
    expect(phone.closeFrame()).toEqual({ code: 1008, reason: 'too many pings' });
    phone.write(clientFrame(0x8, closePayload(1008)));
    expect(await binary.message(2)).toBe(`{"conn_id":"${connId}","close_code":1008}`);
    await waitFor(
      async () => (await r.metric(closedCell('client', 'ping_flood'))) === 1,
      3_000,
      'connections_closed{client,ping_flood} = 1',
    );
    expect(await r.metric(closedCell('client', 'abrupt'))).toBe(0);
    expect(binary.closed).toBeUndefined();
  });

  it(`${MAX_PENDING_PONGS} pings in one write are all answered, in order, and the phone stays`, async () => {
    const r = await startRelay();
    relay = r;
    const binary = await connectBinary(r, 'ping-ok');
    const phone = await rawPhone(r, 'ping-ok');
    phone.write(pings(MAX_PENDING_PONGS));
    await waitFor(
      () => phone.frames().filter((f) => f.opcode === 0xa).length === MAX_PENDING_PONGS,
      3_000,
      `${MAX_PENDING_PONGS} pongs`,
    );
    const pongs = phone.frames().filter((f) => f.opcode === 0xa);
    expect(pongs.map((f) => f.payload.toString())).toEqual(
      Array.from({ length: MAX_PENDING_PONGS }, (_, i) => `p${i}`),
    );
    // Still routed both ways.
    phone.sendText('{"after":true}');
    expect(JSON.parse(await binary.message(1))).toMatchObject({ frame: { after: true } });
    expect(phone.isEnded).toBe(false);
    expect(phone.closeFrame()).toBeUndefined();
  });

  it('a binary flooding pings is closed 1008 "too many pings", counted as ping_flood', async () => {
    const r = await startRelay();
    relay = r;
    const binary = await RawWs.open(r.port, '/v1/server', binaryHeaders('ping-flood-b'));
    raws.push(binary);
    await waitFor(() => r.relay.registry.binaryFor('ping-flood-b') !== undefined, 3_000, 'claim');
    binary.write(pings(MAX_PENDING_PONGS + 1));
    await waitFor(() => binary.closeFrame(), 3_000, 'close frame from the relay');
    expect(binary.closeFrame()).toEqual({ code: 1008, reason: 'too many pings' });
    binary.write(clientFrame(0x8, closePayload(1008)));
    await waitFor(
      async () => (await r.metric(closedCell('server', 'ping_flood'))) === 1,
      3_000,
      'connections_closed{server,ping_flood} = 1',
    );
  });
});
