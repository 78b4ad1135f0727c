// End-to-end routing (docs/protocol.md, "Envelopes"; docs/decisions.md, "Envelopes"): real ws
// clients over 127.0.0.1
// against the real Relay. Envelopes are compared as exact bytes.

import { afterEach, describe, expect, it } from 'vitest';
import {
  connectBinary,
  connectPhone,
  httpGet,
  phoneConnId,
  startRelay,
  type LogLine,
  type TestClient,
  type TestRelay,
} from '../helpers/relay.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { LOG_FIRST_LINES_PER_KEY } from '../../src/log-throttle.js';

let relay: TestRelay | undefined;
afterEach(async () => {
  await relay?.close();
  relay = undefined;
});

const P2B = 'pyrycode_relay_frames_forwarded_total{direction="phone_to_binary"}';
const B2P = 'pyrycode_relay_frames_forwarded_total{direction="binary_to_phone"}';

function logsOf(r: TestRelay, msg: string): LogLine[] {
  return r.logs.filter((l) => l.msg === msg);
}

async function waitLog(
  r: TestRelay,
  msg: string,
  match: (l: LogLine) => boolean = () => true,
  timeoutMs = 3_000,
): Promise<LogLine> {
  return waitFor(() => r.logs.find((l) => l.msg === msg && match(l)), timeoutMs, `log line ${msg}`);
}

/** Records the isBinary flag of every message a client receives. */
function trackOpcodes(client: TestClient): boolean[] {
  const flags: boolean[] = [];
  client.ws.on('message', (_data: Buffer, isBinary: boolean) => flags.push(isBinary));
  return flags;
}

/** Close notices (envelopes carrying close_code) among a binary's messages. */
function noticesIn(binary: TestClient): string[] {
  return binary.messages.filter((m) => m.includes('"close_code"'));
}

async function setup(
  serverId = 'srv-r',
): Promise<{ r: TestRelay; binary: TestClient; phone: TestClient; connId: string }> {
  const r = await startRelay();
  relay = r;
  const binary = await connectBinary(r, serverId);
  const phone = await connectPhone(r, serverId);
  const connId = await phoneConnId(phone, binary);
  return { r, binary, phone, connId };
}

describe('phone -> binary envelope bytes', () => {
  it('wraps a compact payload as {"conn_id":"client-<id>-<8hex>","frame":<payload>}', async () => {
    const { binary, phone, connId } = await setup('srv-wrap');
    expect(connId).toMatch(/^client-srv-wrap-[0-9a-f]{8}$/);
    expect(binary.messages[0]).toBe(`{"conn_id":"${connId}","frame":{"probe":true}}`);
    phone.send('{"a":1,"b":[true,false,null],"c":"x"}');
    expect(await binary.message(2)).toBe(`{"conn_id":"${connId}","frame":{"a":1,"b":[true,false,null],"c":"x"}}`);
  });

  it('compacts insignificant whitespace', async () => {
    const { binary, phone, connId } = await setup();
    phone.send(' {\n  "a" : 1 ,\t"b" : [ 1 , 2 ,\r\n 3 ] , "s" : "keep  these  spaces" }\n ');
    expect(await binary.message(2)).toBe(
      `{"conn_id":"${connId}","frame":{"a":1,"b":[1,2,3],"s":"keep  these  spaces"}}`,
    );
  });

  it('HTML-escapes < > & inside strings as \\u003c \\u003e \\u0026', async () => {
    const { binary, phone, connId } = await setup();
    phone.send('{"html":"<b>a&b</b>","<k>":"&"}');
    expect(await binary.message(2)).toBe(
      `{"conn_id":"${connId}","frame":{"html":"\\u003cb\\u003ea\\u0026b\\u003c/b\\u003e","\\u003ck\\u003e":"\\u0026"}}`,
    );
  });

  it('preserves big integers, number spelling, escapes and duplicate keys byte-for-byte', async () => {
    const { binary, phone, connId } = await setup();
    const payload = '{"n":123456789012345678901234567890,"n":-0.5e+10,"f":1.0,"u":"\\u00e9\\n","z":9007199254740993}';
    phone.send(payload);
    expect(await binary.message(2)).toBe(`{"conn_id":"${connId}","frame":${payload}}`);
  });

  it('wraps non-object JSON values too (string, number, array)', async () => {
    const { binary, phone, connId } = await setup();
    phone.send('"just a string"');
    phone.send('42');
    phone.send('[ 1, {"a" : 2} ]');
    expect(await binary.message(4)).toBe(`{"conn_id":"${connId}","frame":[1,{"a":2}]}`);
    expect(binary.messages.slice(1)).toEqual([
      `{"conn_id":"${connId}","frame":"just a string"}`,
      `{"conn_id":"${connId}","frame":42}`,
      `{"conn_id":"${connId}","frame":[1,{"a":2}]}`,
    ]);
  });
});

describe('binary -> phone delivery', () => {
  it('delivers the raw inner frame bytes (whitespace and big ints preserved) as TEXT frames', async () => {
    const { binary, phone, connId } = await setup();
    const opcodes = trackOpcodes(phone);
    const inner1 = '{ "a" : 1,\n  "big": 123456789012345678901234567890, "s":"<&>" }';
    const inner2 = '[1,  2,\t3]';
    const inner3 = '"text"';
    binary.send(`{"conn_id":"${connId}","frame":${inner1}}`);
    binary.send(`{ "frame" : ${inner2} , "conn_id" : "${connId}" }`);
    binary.send(`{"conn_id":"${connId}","frame":${inner3},"unknown":{"x":[1]}}`);
    await phone.message(3);
    expect(phone.messages).toEqual([inner1, inner2, inner3]);
    expect(opcodes).toEqual([false, false, false]);
  });

  it('delivers a binary-opcode envelope from the binary as a TEXT frame to the phone', async () => {
    const { binary, phone, connId } = await setup();
    const opcodes = trackOpcodes(phone);
    binary.ws.send(Buffer.from(`{"conn_id":"${connId}","frame":{"b":1}}`), { binary: true });
    expect(await phone.message(1)).toBe('{"b":1}');
    expect(opcodes).toEqual([false]);
  });

  it('routes only to the addressed phone among several', async () => {
    const r = await startRelay();
    relay = r;
    const binary = await connectBinary(r, 'srv-multi');
    const phones = [
      await connectPhone(r, 'srv-multi'),
      await connectPhone(r, 'srv-multi'),
      await connectPhone(r, 'srv-multi'),
    ];
    const ids: string[] = [];
    for (const p of phones) ids.push(await phoneConnId(p, binary));
    expect(new Set(ids).size).toBe(3);
    binary.send(`{"conn_id":"${ids[1]}","frame":{"to":1}}`);
    expect(await phones[1]!.message(1)).toBe('{"to":1}');
    // Per-binary read order + per-phone FIFO: a marker sent afterwards arrives after anything
    // that could have been misrouted earlier.
    binary.send(`{"conn_id":"${ids[0]}","frame":{"marker":0}}`);
    binary.send(`{"conn_id":"${ids[2]}","frame":{"marker":2}}`);
    await phones[0]!.message(1);
    await phones[2]!.message(1);
    await sleep(100);
    expect(phones[0]!.messages).toEqual(['{"marker":0}']);
    expect(phones[1]!.messages).toEqual(['{"to":1}']);
    expect(phones[2]!.messages).toEqual(['{"marker":2}']);
  });

  it('a binary cannot address a phone of another server-id (unknown_conn_id, nothing delivered)', async () => {
    const r = await startRelay();
    relay = r;
    const binaryA = await connectBinary(r, 'srv-a');
    const binaryB = await connectBinary(r, 'srv-b');
    const phoneB = await connectPhone(r, 'srv-b');
    const idB = await phoneConnId(phoneB, binaryB);
    binaryA.send(`{"conn_id":"${idB}","frame":{"forged":true}}`);
    const line = await waitLog(r, 'binary_forwarder_unknown_conn_id');
    expect(line).toMatchObject({ level: 'WARN', server_id: 'srv-a', conn_id: idB });
    binaryB.send(`{"conn_id":"${idB}","frame":{"legit":true}}`);
    expect(await phoneB.message(1)).toBe('{"legit":true}');
    await sleep(100);
    expect(phoneB.messages).toEqual(['{"legit":true}']);
    expect(binaryA.closed).toBeUndefined();
    expect(phoneB.closed).toBeUndefined();
  });

  it('an unknown conn_id under its own server-id is logged (warn) and dropped; the binary stays up', async () => {
    const { r, binary, phone, connId } = await setup('srv-unk');
    binary.send('{"conn_id":"client-srv-unk-00000000","frame":{"x":1}}');
    const line = await waitLog(r, 'binary_forwarder_unknown_conn_id');
    expect(line).toMatchObject({ level: 'WARN', server_id: 'srv-unk', conn_id: 'client-srv-unk-00000000' });
    binary.send(`{"conn_id":"${connId}","frame":{"after":1}}`);
    expect(await phone.message(1)).toBe('{"after":1}');
    expect(binary.closed).toBeUndefined();
  });
});

describe('malformed binary envelopes', () => {
  it('are logged as warn binary_forwarder_unmarshal_err (the first LOG_FIRST_LINES_PER_KEY, the rest counted as suppressed) and dropped; the binary stays connected', async () => {
    const { r, binary, phone, connId } = await setup('srv-mal');
    const bad = [
      'not json',
      '[1,2,3]',
      `{"conn_id":123,"frame":{"a":1}}`,
      `{"conn_id":"${connId}","close_code":70000,"frame":{"a":1}}`,
      `{"conn_id":"${connId}","close_code":-1,"frame":{"a":1}}`,
      `{"conn_id":"${connId}","close_code":1.5,"frame":{"a":1}}`,
      `{"conn_id":"${connId}","close_code":"x","frame":{"a":1}}`,
      '{"frame":{"a":1}}',
      `{"conn_id":"${connId}"}`,
      `{"conn_id":"${connId}","frame":null}`,
      `{"conn_id":"${connId}","frame":{"a":1}`,
      '',
    ];
    for (const b of bad) binary.send(b);
    const suppressed = 'pyrycode_relay_log_lines_suppressed_total{event="binary_forwarder_unmarshal_err"}';
    await waitFor(
      async () => logsOf(r, 'binary_forwarder_unmarshal_err').length + (await r.metric(suppressed)) >= bad.length,
      3_000,
      'one unmarshal_err (logged or suppressed) per bad envelope',
    );
    const lines = logsOf(r, 'binary_forwarder_unmarshal_err');
    expect(lines).toHaveLength(LOG_FIRST_LINES_PER_KEY);
    expect(await r.metric(suppressed)).toBe(bad.length - LOG_FIRST_LINES_PER_KEY);
    for (const line of lines) {
      expect(line.level).toBe('WARN');
      expect(line.server_id).toBe('srv-mal');
      expect(line.binary_conn_id).toMatch(/^server-srv-mal-[0-9a-f]{8}$/);
      expect(typeof line.err).toBe('string');
      expect(line.conn_id).toBeUndefined();
    }
    // Later valid frames still route; nothing malformed reached the phone.
    binary.send(`{"conn_id":"${connId}","frame":{"valid":1}}`);
    expect(await phone.message(1)).toBe('{"valid":1}');
    await sleep(100);
    expect(phone.messages).toEqual(['{"valid":1}']);
    expect(binary.closed).toBeUndefined();
    expect(phone.closed).toBeUndefined();
    expect(await r.metric(B2P)).toBe(1);
  });

  it('push_wake without conn_id is dropped with warn binary_forwarder_push_wake_dropped; the token is never logged', async () => {
    const { r, binary, phone, connId } = await setup('srv-push');
    binary.send('{"push_wake":{"platform":"fcm","token":"PUSH-TOKEN-MARKER"}}');
    const line = await waitLog(r, 'binary_forwarder_push_wake_dropped');
    expect(line.level).toBe('WARN');
    expect(line.server_id).toBe('srv-push');
    expect(line.binary_conn_id).toMatch(/^server-srv-push-[0-9a-f]{8}$/);
    expect(typeof line.err).toBe('string');
    // A push_wake on a conn_id envelope is ignored and the frame is routed normally.
    binary.send(`{"conn_id":"${connId}","frame":{"w":1},"push_wake":{"platform":"fcm","token":"PUSH-TOKEN-MARKER"}}`);
    expect(await phone.message(1)).toBe('{"w":1}');
    expect(logsOf(r, 'binary_forwarder_push_wake_dropped')).toHaveLength(1);
    expect(r.logText()).not.toContain('PUSH-TOKEN-MARKER');
    expect(binary.closed).toBeUndefined();
  });
});

describe('phone sends something that is not JSON', () => {
  for (const [name, payload] of [
    ['invalid JSON', '{not json'],
    ['an empty frame', ''],
    ['trailing garbage', '{"a":1} x'],
  ] as const) {
    it(`${name}: phone closed 1000, phone_forwarder_marshal_err, binary gets a 1000 close notice and stays up`, async () => {
      const { r, binary, phone, connId } = await setup('srv-bad');
      phone.send(payload);
      expect(await phone.waitClose()).toEqual({ code: 1000, reason: '' });
      const line = await waitLog(r, 'phone_forwarder_marshal_err');
      expect(line).toMatchObject({ level: 'WARN', server_id: 'srv-bad', conn_id: connId });
      expect(await binary.message(2)).toBe(`{"conn_id":"${connId}","close_code":1000}`);
      expect(binary.messages).toHaveLength(2);
      // The binary is still up and routes for a new phone.
      const phone2 = await connectPhone(r, 'srv-bad');
      const id2 = await phoneConnId(phone2, binary);
      binary.send(`{"conn_id":"${id2}","frame":{"ok":true}}`);
      expect(await phone2.message(1)).toBe('{"ok":true}');
      expect(binary.closed).toBeUndefined();
    });
  }
});

describe('close directives', () => {
  it('F1, F2, then a directive with a frame: phone gets F1, F2, the frame, then close 4401 with an empty reason; no notice', async () => {
    const { r, binary, phone, connId } = await setup('srv-dir');
    const sibling = await connectPhone(r, 'srv-dir');
    await phoneConnId(sibling, binary);
    binary.send(`{"conn_id":"${connId}","frame":{"f":1}}`);
    binary.send(`{"conn_id":"${connId}","frame":{"f":2}}`);
    binary.send(`{"conn_id":"${connId}","close_code":4401,"frame":{"bye":1}}`);
    expect(await phone.waitClose()).toEqual({ code: 4401, reason: '' });
    expect(phone.messages).toEqual(['{"f":1}', '{"f":2}', '{"bye":1}']);
    const line = await waitLog(r, 'binary_forwarder_phone_closed');
    expect(line).toMatchObject({ level: 'INFO', server_id: 'srv-dir', conn_id: connId, close_code: 4401 });
    // A frame from a sibling after the close: the binary must see it and no close notice.
    sibling.send('{"after":1}');
    await binary.message(3);
    await sleep(100);
    expect(noticesIn(binary)).toEqual([]);
    expect(binary.closed).toBeUndefined();
  });

  it('a directive with "frame":null delivers nothing and closes with the code', async () => {
    const { r, binary, phone, connId } = await setup('srv-dir-null');
    binary.send(`{"conn_id":"${connId}","close_code":4408,"frame":null}`);
    expect(await phone.waitClose()).toEqual({ code: 4408, reason: '' });
    expect(phone.messages).toEqual([]);
    expect(await waitLog(r, 'binary_forwarder_phone_closed')).toMatchObject({ conn_id: connId, close_code: 4408 });
    await sleep(150);
    expect(noticesIn(binary)).toEqual([]);
  });

  it('a directive without a frame key delivers nothing and closes with the code', async () => {
    const { r, binary, phone, connId } = await setup('srv-dir-none');
    binary.send(`{"conn_id":"${connId}","frame":{"last":1}}`);
    binary.send(`{"conn_id":"${connId}","close_code":4421}`);
    expect(await phone.waitClose()).toEqual({ code: 4421, reason: '' });
    expect(phone.messages).toEqual(['{"last":1}']);
    expect(await waitLog(r, 'binary_forwarder_phone_closed')).toMatchObject({ conn_id: connId, close_code: 4421 });
    await sleep(150);
    expect(noticesIn(binary)).toEqual([]);
  });

  for (const code of [1005, 1006, 2000, 5000, 65535]) {
    it(`an unsendable directive code ${code} becomes 1011 with an empty reason`, async () => {
      const { r, binary, phone, connId } = await setup(`srv-dir-${code}`);
      binary.send(`{"conn_id":"${connId}","close_code":${code},"frame":{"x":1}}`);
      expect(await phone.waitClose()).toEqual({ code: 1011, reason: '' });
      expect(phone.messages).toEqual(['{"x":1}']);
      await waitLog(r, 'binary_forwarder_phone_closed');
      expect(binary.closed).toBeUndefined();
      await sleep(150);
      expect(noticesIn(binary)).toEqual([]);
    });
  }
});

describe('close notices (relay -> binary)', () => {
  it('phone closes with 1000 -> exactly {"conn_id":"…","close_code":1000}', async () => {
    const { binary, phone, connId } = await setup('srv-cn');
    phone.close(1000);
    expect(await binary.message(2)).toBe(`{"conn_id":"${connId}","close_code":1000}`);
    expect(binary.messages[1]).not.toContain('frame');
  });

  it('phone closes with 4000 -> close_code 4000', async () => {
    const { binary, phone, connId } = await setup('srv-cn');
    phone.close(4000, 'bye');
    expect(await binary.message(2)).toBe(`{"conn_id":"${connId}","close_code":4000}`);
  });

  it('phone sends a close frame without a status -> close_code 1005', async () => {
    const { binary, phone, connId } = await setup('srv-cn');
    phone.ws.close(); // ws sends a close frame with an empty payload
    expect(await binary.message(2)).toBe(`{"conn_id":"${connId}","close_code":1005}`);
  });

  it('phone socket destroyed abruptly -> close_code 1001', async () => {
    const { binary, phone, connId } = await setup('srv-cn');
    phone.ws.terminate();
    expect(await binary.message(2)).toBe(`{"conn_id":"${connId}","close_code":1001}`);
  });

  it("the notice arrives after the phone's last forwarded frame", async () => {
    const { binary, phone, connId } = await setup('srv-cn');
    phone.send('{"last":1}');
    phone.send('{"last":2}');
    phone.close(1000);
    await binary.message(4);
    expect(binary.messages.slice(1)).toEqual([
      `{"conn_id":"${connId}","frame":{"last":1}}`,
      `{"conn_id":"${connId}","frame":{"last":2}}`,
      `{"conn_id":"${connId}","close_code":1000}`,
    ]);
  });

  it('binary replaced (reclaim within grace) -> the phone gets 4404 and the new binary no notice', async () => {
    const r = await startRelay({ gracePeriodMs: 5_000 });
    relay = r;
    const b1 = await connectBinary(r, 'srv-re');
    const phone = await connectPhone(r, 'srv-re');
    await phoneConnId(phone, b1);
    b1.close(1000);
    await waitLog(r, 'server_released', (l) => l.server_id === 'srv-re');
    const b2 = await connectBinary(r, 'srv-re');
    expect(await phone.waitClose()).toEqual({ code: 4404, reason: 'binary reclaimed server-id' });
    // A fresh phone's probe is the first thing b2 ever sees: no stray close notice before it.
    const phone2 = await connectPhone(r, 'srv-re');
    const id2 = await phoneConnId(phone2, b2);
    await sleep(100);
    expect(b2.messages).toEqual([`{"conn_id":"${id2}","frame":{"probe":true}}`]);
  });
});

describe('frame counters', () => {
  it('frames_forwarded_total counts exactly (directive frame counted, notices and drops not); /healthz sums both directions', async () => {
    const { r, binary, phone: a, connId: idA } = await setup('srv-count');
    const b = await connectPhone(r, 'srv-count');
    const idB = await phoneConnId(b, binary); // p2b: 2 probes
    a.send('{"n":1}');
    a.send('{"n":2}'); // p2b: 4
    await binary.message(4);
    binary.send(`{"conn_id":"${idA}","frame":{"m":1}}`);
    binary.send(`{"conn_id":"${idA}","frame":{"m":2}}`); // b2p: 2
    binary.send('garbage'); // malformed: not counted
    binary.send('{"conn_id":"client-srv-count-ffffffff","frame":{}}'); // unknown: not counted
    binary.send(`{"conn_id":"${idB}","close_code":4401,"frame":{"bye":1}}`); // b2p: 3
    expect(await b.waitClose()).toEqual({ code: 4401, reason: '' });
    await a.message(2);
    a.close(1000); // close notice: not counted
    expect(await binary.message(5)).toBe(`{"conn_id":"${idA}","close_code":1000}`);
    await waitFor(async () => (await r.metric(B2P)) === 3, 3_000, 'b2p = 3');
    await sleep(100);
    expect(await r.metric(P2B)).toBe(4);
    expect(await r.metric(B2P)).toBe(3);
    const health = await httpGet(`${r.httpUrl}/healthz`);
    expect(health.status).toBe(200);
    const body = JSON.parse(health.body) as Record<string, unknown>;
    expect(body.frames_forwarded_since_boot).toBe(7);
    expect(Object.keys(body)).toEqual([
      'status',
      'version',
      'connected_binaries',
      'connected_phones',
      'uptime_seconds',
      'binaries_since_boot',
      'phones_since_boot',
      'frames_forwarded_since_boot',
    ]);
  });
});
