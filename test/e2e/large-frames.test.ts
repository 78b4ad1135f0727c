// Large frames on the wire: the relay writes a large phone frame's envelope around the phone's
// bytes as received, and sends a large binary-to-phone frame as the view of the binary's message
// it is, instead of copying either (docs/performance.md, "Where the targets stand"). Neither may
// change a byte or the framing (docs/protocol.md, "Envelopes"): every envelope is one unfragmented
// text frame with the shortest length encoding, exactly what ws writes. Checked with raw-frame
// readers on both sides (every byte after the upgrade) and with real ws clients.

import { describe, expect, it } from 'vitest';
import { binaryHeaders, phoneConnId, phoneHeaders, type TestRelay, useRelays } from '../helpers/relays.js';
import { clientFrame, RawWs } from '../helpers/ws-frames.js';
import { waitFor } from '../helpers/wait.js';
import { IN_FLIGHT_VIEW_MIN_BYTES } from '../../src/session/retained.js';

const { boot, track, binary: wsBinary, phone: wsPhone } = useRelays();

const TEXT = 0x1;
const BINARY = 0x2;

/** The exact bytes of one unmasked, unfragmented text frame from a server: FIN + opcode 1, then
 * the shortest length encoding RFC 6455 section 5.2 allows. */
function serverTextFrame(payload: Buffer): Buffer {
  const n = payload.length;
  let head: Buffer;
  if (n <= 125) head = Buffer.from([0x81, n]);
  else if (n <= 0xffff) {
    head = Buffer.from([0x81, 126, 0, 0]);
    head.writeUInt16BE(n, 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = 0x81;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  return Buffer.concat([head, payload]);
}

/** A compact JSON frame of exactly `bytes` bytes: {"s":<seq>,"p":"xxxx…"}. */
function compactFrame(bytes: number, seq: number): Buffer {
  const head = `{"s":${seq},"p":"`;
  return Buffer.from(head + String.fromCharCode(0x61 + (seq % 26)).repeat(bytes - head.length - 2) + '"}');
}

/** Sizes around the view threshold, the 16-bit/64-bit length boundary of the envelope, and the
 * largest the relay accepts from a phone (256 KiB messages; the envelope adds ~50 bytes). */
const SIZES = [
  // Small frames (copied into one frame buffer): envelopes across the 7-bit/16-bit length boundary
  // (the prefix is 47 bytes here, so 77 and 78 make 125- and 126-byte envelopes).
  16,
  77,
  78,
  79,
  1_000,
  IN_FLIGHT_VIEW_MIN_BYTES - 1,
  IN_FLIGHT_VIEW_MIN_BYTES,
  16 * 1024,
  65_535 - 60,
  65_535 - 40,
  65_536,
  200 * 1024,
  256 * 1024 - 64,
];

async function rawPair(r: TestRelay, serverId: string): Promise<{ binary: RawWs; phone: RawWs; connId: string }> {
  const binary = track(await RawWs.open(r.port, '/v1/server', binaryHeaders(serverId)));
  await waitFor(() => r.relay.registry.binaryFor(serverId) !== undefined, 3_000, `claim of ${serverId}`);
  const phone = track(await RawWs.open(r.port, '/v1/client', phoneHeaders(serverId)));
  phone.sendText('{"hello":1}');
  await waitFor(() => binary.frames().length === 1, 3_000, 'the hello envelope');
  const connId = (JSON.parse(binary.frames()[0]!.payload.toString('utf8')) as { conn_id: string }).conn_id;
  return { binary, phone, connId };
}

/** Waits until `raw` received at least `bytes` bytes after the upgrade. */
async function receivedBytes(raw: RawWs, bytes: number, what: string): Promise<void> {
  await waitFor(() => raw.data.length >= bytes, 10_000, `${what}: ${bytes} bytes`);
}

describe('large phone frames reach the binary byte for byte, one text frame each', () => {
  it('compact frames of 16 B - 256 KiB (copied below 4 KiB, views above), a frame to compact and a binary-opcode frame, sent in one TCP write and one by one: exactly the envelope bytes and framing ws writes', async () => {
    const r = await boot();
    const { binary, phone, connId } = await rawPair(r, 'large-p2b');
    const prefix = `{"conn_id":"${connId}","frame":`;
    const sent: { opcode: number; payload: Buffer; framed: Buffer }[] = SIZES.map((size, i) => {
      const payload = compactFrame(size, i);
      return { opcode: TEXT, payload, framed: Buffer.from(`${prefix}${payload}}`) };
    });
    // Whitespace and < > & to rewrite: the envelope is built, not written around the payload.
    const spaced = ` { "p" : "${'<&>'.repeat(6_000)}" , "q" : [ 1 , 2 ] } `;
    const compacted = `{"p":"${'\\u003c\\u0026\\u003e'.repeat(6_000)}","q":[1,2]}`;
    sent.push({ opcode: TEXT, payload: Buffer.from(spaced), framed: Buffer.from(`${prefix}${compacted}}`) });
    const binaryOpcode = compactFrame(20_000, 99);
    sent.push({ opcode: BINARY, payload: binaryOpcode, framed: Buffer.from(`${prefix}${binaryOpcode}}`) });

    const before = binary.data.length;
    // All in one write: the relay reads several frames out of one socket chunk...
    phone.write(Buffer.concat(sent.map((s) => clientFrame(s.opcode, s.payload))));
    const expected = Buffer.concat(sent.map((s) => serverTextFrame(s.framed)));
    await receivedBytes(binary, before + expected.length, 'envelopes of the single write');
    expect(binary.data.subarray(before).equals(expected)).toBe(true);
    // ...and one by one, each in a chunk of its own.
    const middle = binary.data.length;
    for (const s of sent) {
      const at = binary.data.length;
      phone.write(clientFrame(s.opcode, s.payload));
      await receivedBytes(binary, at + serverTextFrame(s.framed).length, `envelope of ${s.payload.length} bytes`);
    }
    expect(binary.data.subarray(middle).equals(expected)).toBe(true);
    expect(binary.frames().every((f) => f.fin && f.opcode === TEXT)).toBe(true);
  });

  it('a ws binary gets every large envelope as the exact message', async () => {
    const r = await boot();
    const binary = await wsBinary(r, 'large-p2b-ws');
    const phone = await wsPhone(r, 'large-p2b-ws');
    const connId = await phoneConnId(phone, binary);
    const frames = SIZES.map((size, i) => compactFrame(size, i).toString('utf8'));
    for (const frame of frames) phone.send(frame);
    await binary.message(1 + frames.length, 10_000);
    expect(binary.messages.slice(1)).toEqual(frames.map((f) => `{"conn_id":"${connId}","frame":${f}}`));
  });
});

describe('large binary-to-phone frames reach the phone byte for byte, one text frame each', () => {
  it('envelopes of 4 KiB - 200 KiB frames sent in one TCP write (views of one chunk) and one by one: exactly the frame bytes and framing ws writes', async () => {
    const r = await boot();
    const { binary, phone, connId } = await rawPair(r, 'large-b2p');
    const sizes = SIZES.filter((s) => s <= 200 * 1024); // the envelope must stay under 256 KiB
    const frames = sizes.map((size, i) => compactFrame(size, i));
    const envelopes = frames.map((f) => Buffer.from(`{"conn_id":"${connId}","frame":${f}}`));
    const expected = Buffer.concat(frames.map(serverTextFrame));

    binary.write(Buffer.concat(envelopes.map((e) => clientFrame(TEXT, e))));
    await receivedBytes(phone, expected.length, 'frames of the single write');
    expect(phone.data.equals(expected)).toBe(true);
    for (const e of envelopes) binary.write(clientFrame(TEXT, e));
    await receivedBytes(phone, 2 * expected.length, 'frames sent one by one');
    expect(phone.data.subarray(expected.length).equals(expected)).toBe(true);
  });

  it('a ws phone gets every large frame as the exact message', async () => {
    const r = await boot();
    const binary = await wsBinary(r, 'large-b2p-ws');
    const phone = await wsPhone(r, 'large-b2p-ws');
    const connId = await phoneConnId(phone, binary);
    const frames = SIZES.filter((s) => s <= 200 * 1024).map((size, i) => compactFrame(size, i).toString('utf8'));
    for (const frame of frames) binary.send(`{"conn_id":"${connId}","frame":${frame}}`);
    await phone.message(frames.length, 10_000);
    expect(phone.messages).toEqual(frames);
  });
});
