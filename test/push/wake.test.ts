// Push wakes end to end inside one relay (docs/protocol.md, "Push wakes";
// docs/metrics.md, "Push wakes"): real ws binaries
// send `{"push_wake":…}` to a relay whose FCM and token endpoints are fake servers on loopback.
// Every outcome is driven for real; the metric cells and the log lines must agree, and no device
// token, access token, key material or FCM free text may reach a log line.

import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LOG_FIRST_LINES_PER_KEY } from '../../src/log-throttle.js';
import { CANCELLED_TEXT } from '../../src/push/fcm.js';
import {
  PUSH_IN_FLIGHT_CAP,
  PUSH_MALFORMED,
  PUSH_MAX_IN_FLIGHT,
  PUSH_OFF,
  PUSH_RATE_BURST,
  PUSH_RATE_INTERVAL_MS,
  PUSH_RATE_LIMITED,
  parsePushWake,
  tokenFingerprint,
} from '../../src/push/waker.js';
import {
  ACCESS_TOKEN,
  FCM_FREE_TEXT,
  FakeServer,
  MESSAGE_NAME,
  SEND_PATH,
  fcmErrorBody,
  json,
  okToken,
  startFakeGoogle,
  verifyAssertion,
  type FakeGoogle,
} from '../helpers/fake-fcm.js';
import {
  connectBinary,
  connectPhone,
  phoneConnId,
  sampleValue,
  startRelay,
  type LogLine,
  type TestClient,
  type TestRelay,
} from '../helpers/relay.js';
import { sleep, waitFor } from '../helpers/wait.js';

const OUTCOMES = ['dropped', 'send_failed', 'sent', 'token_fetch_failed', 'unregistered'] as const;
type Outcome = (typeof OUTCOMES)[number];
type Cells = Record<Outcome, number>;

const device = (i: number | string): string => `DEVICE-TOKEN-MARKER-${i}:APA91b`;
const wake = (token: string, platform = 'fcm'): string => JSON.stringify({ push_wake: { platform, token } });

let g: FakeGoogle;
/** Every relay the current test started (closed and checked in afterEach). */
let relays: TestRelay[] = [];
let extra: FakeServer[] = [];
/** Device tokens used by the current test (none may be logged). */
let tokensUsed: string[] = [];

async function boot(timeoutMs?: number): Promise<TestRelay> {
  const r = await startRelay({
    push: {
      credentials: g.key.credentials,
      endpoint: g.fcm.url,
      tokenUrl: g.tokenUrl,
      ...(timeoutMs === undefined ? {} : { timeoutMs }),
    },
  });
  relays.push(r);
  return r;
}

function send(binary: TestClient, token: string): void {
  tokensUsed.push(token);
  binary.send(wake(token));
}

async function cells(relay: TestRelay): Promise<Cells> {
  const text = await relay.scrape();
  const out = {} as Cells;
  for (const o of OUTCOMES) out[o] = sampleValue(text, `pyrycode_relay_push_wakes_total{outcome="${o}"}`);
  return out;
}

const zero: Cells = { dropped: 0, send_failed: 0, sent: 0, token_fetch_failed: 0, unregistered: 0 };

function lines(relay: TestRelay, msg: string): LogLine[] {
  return relay.logs.filter((l) => l.msg === msg);
}

async function outcomeLines(relay: TestRelay, n: number): Promise<LogLine[]> {
  await waitFor(
    () => lines(relay, 'push_wake_sent').length + lines(relay, 'push_wake_send_failed').length >= n,
    5_000,
    `${n} push outcome lines`,
  );
  return relay.logs.filter((l) => l.msg === 'push_wake_sent' || l.msg === 'push_wake_send_failed');
}

const DURATION_RE = /^\d+(\.\d+)?(ns|µs|ms|s)$|^(\d+m)?\d+(\.\d+)?s$/;

beforeEach(async () => {
  g = await startFakeGoogle();
  tokensUsed = [];
});

afterEach(async () => {
  const started = relays;
  relays = [];
  for (const relay of started) {
    // Drain, then close the waker (the daemon's order).
    await relay.close();
    await relay.relay.push.close(2_000);
    // Log hygiene, for every test.
    const text = relay.logText();
    const secrets = [
      ...tokensUsed,
      ACCESS_TOKEN,
      FCM_FREE_TEXT,
      'FCM-FREE-TEXT-MARKER',
      'DEVICE-TOKEN-MARKER',
      ...g.key.pemBodyLines,
    ];
    for (const s of secrets) expect(text.includes(s), `log contains ${s.slice(0, 24)}`).toBe(false);
    // Every outcome line carries exactly the spec's keys.
    for (const l of relay.logs) {
      if (l.msg === 'push_wake_sent') {
        expect(Object.keys(l).sort()).toEqual(
          [
            'duration',
            'level',
            'msg',
            'server_id',
            'time',
            'token_fp',
            ...('fcm_message_id' in l ? ['fcm_message_id'] : []),
          ].sort(),
        );
        expect(l.level).toBe('INFO');
      }
      if (l.msg === 'push_wake_send_failed') {
        expect(Object.keys(l).sort()).toEqual(['duration', 'err', 'level', 'msg', 'server_id', 'time', 'token_fp']);
        expect(l.level).toBe('WARN');
      }
      if (l.msg === 'binary_forwarder_push_wake_dropped') {
        expect(Object.keys(l).sort()).toEqual(['binary_conn_id', 'err', 'level', 'msg', 'server_id', 'time']);
        expect(l.level).toBe('WARN');
      }
    }
  }
  await Promise.all([g.close(), ...extra.map((s) => s.close())]);
  extra = [];
});

describe('push on', () => {
  it('the push family has its five cells at 0 from boot', async () => {
    const relay = await boot();
    expect(await cells(relay)).toEqual(zero);
    const text = await relay.scrape();
    expect(text).toContain(
      '# HELP pyrycode_relay_push_wakes_total Push wakes by outcome. dropped counts rate-limit and in-flight-cap refusals; every admitted wake counts once as sent, unregistered, send_failed or token_fetch_failed when its send returns.\n# TYPE pyrycode_relay_push_wakes_total counter\n',
    );
    expect(relay.relay.push.enabled).toBe(true);
  });

  it('sent: the exact FCM body, a valid RS256 assertion, one sent, one info line with token_fp and fcm_message_id', async () => {
    const relay = await boot();
    const binary = await connectBinary(relay, 'push-sent');
    const token = device('sent');
    send(binary, token);
    const [line] = await outcomeLines(relay, 1);
    expect(line).toMatchObject({
      level: 'INFO',
      msg: 'push_wake_sent',
      server_id: 'push-sent',
      token_fp: createHash('sha256').update(token).digest('hex').slice(0, 8),
      fcm_message_id: MESSAGE_NAME,
    });
    expect(line!['token_fp']).toMatch(/^[0-9a-f]{8}$/);
    expect(line!['duration']).toMatch(DURATION_RE);
    expect(await cells(relay)).toEqual({ ...zero, sent: 1 });

    expect(g.sends()).toHaveLength(1);
    expect(g.sends()[0]!.body).toBe(`{"message":{"token":"${token}","android":{"priority":"HIGH"}}}`);
    expect(g.sends()[0]!.headers['authorization']).toBe(`Bearer ${ACCESS_TOKEN}`);
    const jwt = verifyAssertion(g.tokenForms()[0]!.get('assertion')!, g.key.publicKeyPem);
    expect(jwt.signatureValid).toBe(true);
    expect(jwt.claims).toMatchObject({ iss: g.key.credentials.clientEmail, aud: g.tokenUrl });
    expect(lines(relay, 'binary_forwarder_push_wake_dropped')).toEqual([]);
    // A wake is control, not a frame.
    expect(relay.relay.metrics.framesReceivedBinaryToPhone).toBe(0);
  });

  it('sent without a valid message name: no fcm_message_id, still sent', async () => {
    const relay = await boot();
    g.fcm.handler = (_r, res) => json(res, 200, { name: `bad name ${FCM_FREE_TEXT}` });
    const binary = await connectBinary(relay, 'push-noname');
    send(binary, device('noname'));
    const [line] = await outcomeLines(relay, 1);
    expect(line).toMatchObject({ level: 'INFO', msg: 'push_wake_sent', server_id: 'push-noname' });
    expect('fcm_message_id' in line!).toBe(false);
    expect(await cells(relay)).toEqual({ ...zero, sent: 1 });
  });

  it('UNREGISTERED: unregistered, a warn line with the rendered error', async () => {
    const relay = await boot();
    g.fcm.handler = (_r, res) => json(res, 404, fcmErrorBody(404, 'NOT_FOUND', 'UNREGISTERED'));
    const binary = await connectBinary(relay, 'push-unreg');
    const token = device('unreg');
    send(binary, token);
    const [line] = await outcomeLines(relay, 1);
    expect(line).toMatchObject({
      level: 'WARN',
      msg: 'push_wake_send_failed',
      server_id: 'push-unreg',
      token_fp: tokenFingerprint(token),
      err: 'relay: fcm send failed: status 404 (NOT_FOUND, UNREGISTERED)',
    });
    expect(line!['duration']).toMatch(DURATION_RE);
    expect(await cells(relay)).toEqual({ ...zero, unregistered: 1 });
  });

  it('other FCM errors: send_failed with status, error.status and errorCode only', async () => {
    const relay = await boot();
    const replies = [
      () => fcmErrorBody(500, 'INTERNAL', 'INTERNAL'),
      () => fcmErrorBody(400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT'),
    ];
    let i = 0;
    g.fcm.handler = (_r, res) => {
      const n = i++;
      json(res, n === 0 ? 500 : 400, replies[n]!());
    };
    const binary = await connectBinary(relay, 'push-err');
    send(binary, device('err-1'));
    await outcomeLines(relay, 1);
    send(binary, device('err-2'));
    const out = await outcomeLines(relay, 2);
    expect(out.map((l) => l['err'])).toEqual([
      'relay: fcm send failed: status 500 (INTERNAL, INTERNAL)',
      'relay: fcm send failed: status 400 (INVALID_ARGUMENT, INVALID_ARGUMENT)',
    ]);
    expect(await cells(relay)).toEqual({ ...zero, send_failed: 2 });
  });

  it('token endpoint 401: token_fetch_failed, FCM never contacted', async () => {
    const relay = await boot();
    g.token.handler = (_r, res) => json(res, 401, { error: 'invalid_grant', error_description: FCM_FREE_TEXT });
    const binary = await connectBinary(relay, 'push-401');
    send(binary, device('401'));
    const [line] = await outcomeLines(relay, 1);
    expect(line).toMatchObject({ msg: 'push_wake_send_failed', err: 'relay: fcm token fetch failed: status 401' });
    expect(await cells(relay)).toEqual({ ...zero, token_fetch_failed: 1 });
    expect(g.fcm.requests).toHaveLength(0);
  });

  it('the access token is fetched once for several wakes, and once for concurrent ones', async () => {
    const relay = await boot();
    const binary = await connectBinary(relay, 'push-cache');
    for (let i = 0; i < 3; i++) {
      send(binary, device(`c${i}`));
      await outcomeLines(relay, i + 1);
    }
    expect(g.token.requests).toHaveLength(1);
    const other = await boot();
    const b2 = await connectBinary(other, 'push-cache-2');
    g.token.requests.length = 0;
    for (let i = 0; i < 5; i++) send(b2, device(`cc${i}`));
    await outcomeLines(other, 5);
    expect(g.token.requests).toHaveLength(1);
    expect(await cells(other)).toEqual({ ...zero, sent: 5 });
  });

  it('timeouts: a stalled FCM is send_failed, a stalled token endpoint token_fetch_failed', async () => {
    const relay = await boot(300);
    const binary = await connectBinary(relay, 'push-timeout');
    g.fcm.handler = (_r, res) => g.fcm.stall(res);
    send(binary, device('t1'));
    const [first] = await outcomeLines(relay, 1);
    expect(first).toMatchObject({ msg: 'push_wake_send_failed', err: 'relay: fcm send failed: timeout' });
    expect(await cells(relay)).toEqual({ ...zero, send_failed: 1 });

    const relay2 = await boot(300);
    g.token.handler = (_r, res) => g.token.stall(res);
    const b2 = await connectBinary(relay2, 'push-timeout-2');
    send(b2, device('t2'));
    const [second] = await outcomeLines(relay2, 1);
    expect(second).toMatchObject({ msg: 'push_wake_send_failed', err: 'relay: fcm token fetch failed: timeout' });
    expect(await cells(relay2)).toEqual({ ...zero, token_fetch_failed: 1 });
  });

  it('a 302 from FCM is send_failed and the redirect target is never contacted', async () => {
    const target = await FakeServer.start(okToken());
    extra.push(target);
    const relay = await boot();
    g.fcm.handler = (_r, res) => {
      res.writeHead(302, { Location: `${target.url}${SEND_PATH}` });
      res.end();
    };
    const binary = await connectBinary(relay, 'push-302');
    send(binary, device('302'));
    const [line] = await outcomeLines(relay, 1);
    expect(line).toMatchObject({ msg: 'push_wake_send_failed', err: 'relay: fcm send failed: status 302' });
    expect(await cells(relay)).toEqual({ ...zero, send_failed: 1 });
    await sleep(100);
    expect(target.requests).toHaveLength(0);
  });

  it('a reply over 4 KiB is cut at the cap and the wake counts as sent (without a name)', async () => {
    const relay = await boot(5_000);
    g.fcm.handler = (_r, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.write(`{"name":"${MESSAGE_NAME}","pad":"${'x'.repeat(8_000)}`);
      g.fcm.stall(res); // never ends: only the cap can finish this read
    };
    const binary = await connectBinary(relay, 'push-big');
    const t0 = Date.now();
    send(binary, device('big'));
    const [line] = await outcomeLines(relay, 1);
    expect(Date.now() - t0).toBeLessThan(3_000);
    expect(line).toMatchObject({ msg: 'push_wake_sent' });
    expect('fcm_message_id' in line!).toBe(false);
    expect(await cells(relay)).toEqual({ ...zero, sent: 1 });
  });
});

describe('admission', () => {
  it("the limits are the reference's", () => {
    expect([PUSH_RATE_BURST, PUSH_RATE_INTERVAL_MS, PUSH_MAX_IN_FLIGHT]).toEqual([6, 10_000, 32]);
  });

  it('rate limit: 7 wakes from one server-id at once -> 6 admitted, 1 dropped; another id is unaffected', async () => {
    const relay = await boot();
    const binary = await connectBinary(relay, 'push-rl');
    for (let i = 0; i < 7; i++) send(binary, device(`rl${i}`));
    await outcomeLines(relay, 6);
    await waitFor(() => lines(relay, 'binary_forwarder_push_wake_dropped').length === 1, 3_000, 'the refusal');
    expect(lines(relay, 'binary_forwarder_push_wake_dropped')[0]).toMatchObject({
      level: 'WARN',
      server_id: 'push-rl',
      binary_conn_id: expect.stringMatching(/^server-push-rl-[0-9a-f]{8}$/),
      err: PUSH_RATE_LIMITED,
    });
    const other = await connectBinary(relay, 'push-rl-other');
    send(other, device('rl-other'));
    await outcomeLines(relay, 7);
    expect(await cells(relay)).toEqual({ ...zero, sent: 7, dropped: 1 });
    expect(g.sends()).toHaveLength(7);
  });

  it('in-flight cap: with 32 sends stalled the 33rd is dropped; once they finish, wakes are admitted again', async () => {
    const relay = await boot(10_000);
    g.fcm.handler = (_r, res) => g.fcm.stall(res);
    const binaries: TestClient[] = [];
    for (let i = 0; i < 6; i++) binaries.push(await connectBinary(relay, `push-cap-${i}`));
    // 5 ids x 6 + 2 = 32 sends.
    let n = 0;
    for (let i = 0; i < 5; i++) for (let j = 0; j < 6; j++) send(binaries[i]!, device(`cap${n++}`));
    send(binaries[5]!, device(`cap${n++}`));
    send(binaries[5]!, device(`cap${n++}`));
    await waitFor(() => g.fcm.stalled.length === 32, 5_000, '32 stalled sends at FCM');
    expect(relay.relay.push.inFlightCount).toBe(32);
    send(binaries[5]!, device('cap-33'));
    await waitFor(() => lines(relay, 'binary_forwarder_push_wake_dropped').length === 1, 3_000, 'the refusal');
    expect(lines(relay, 'binary_forwarder_push_wake_dropped')[0]).toMatchObject({
      server_id: 'push-cap-5',
      err: PUSH_IN_FLIGHT_CAP,
    });
    expect(await cells(relay)).toEqual({ ...zero, dropped: 1 });
    expect(lines(relay, 'push_wake_sent')).toEqual([]);

    g.fcm.handler = (_r, res) => json(res, 200, { name: MESSAGE_NAME });
    g.fcm.release((res) => json(res, 200, { name: MESSAGE_NAME }));
    await outcomeLines(relay, 32);
    await waitFor(() => relay.relay.push.inFlightCount === 0, 3_000, 'in-flight to drain');
    send(binaries[5]!, device('cap-after'));
    await outcomeLines(relay, 33);
    expect(await cells(relay)).toEqual({ ...zero, sent: 33, dropped: 1 });
  });

  it('malformed wakes are refused without counting; push_wake keys match case-insensitively', async () => {
    const relay = await boot();
    const binary = await connectBinary(relay, 'push-bad');
    const bad = [
      '{"push_wake":"DEVICE-TOKEN-MARKER-bad"}',
      '{"push_wake":["DEVICE-TOKEN-MARKER-bad"]}',
      '{"push_wake":{"platform":"apns","token":"DEVICE-TOKEN-MARKER-bad"}}',
      '{"push_wake":{"platform":"FCM","token":"DEVICE-TOKEN-MARKER-bad"}}',
      '{"push_wake":{"platform":"fcm","token":""}}',
      '{"push_wake":{"platform":"fcm"}}',
      '{"push_wake":{"token":"DEVICE-TOKEN-MARKER-bad"}}',
      '{"push_wake":{"platform":"fcm","token":42}}',
      '{"push_wake":{"platform":"fcm","token":null}}',
      '{"push_wake":{"platform":["fcm"],"token":"DEVICE-TOKEN-MARKER-bad"}}',
      '{"push_wake":{}}',
      '{"push_wake":7}',
    ];
    tokensUsed.push('DEVICE-TOKEN-MARKER-bad');
    for (const m of bad) binary.send(m);
    // The first LOG_FIRST_LINES_PER_KEY refusals of this binary are logged, the rest counted as
    // suppressed (docs/operations.md "Log volume").
    const suppressed = 'pyrycode_relay_log_lines_suppressed_total{event="binary_forwarder_push_wake_dropped"}';
    await waitFor(
      async () =>
        lines(relay, 'binary_forwarder_push_wake_dropped').length === LOG_FIRST_LINES_PER_KEY &&
        (await relay.metric(suppressed)) === bad.length - LOG_FIRST_LINES_PER_KEY,
      3_000,
      'refusals',
    );
    for (const l of lines(relay, 'binary_forwarder_push_wake_dropped')) {
      expect(l).toMatchObject({ server_id: 'push-bad', err: PUSH_MALFORMED });
    }
    // Go's decoder: case-insensitive keys, last duplicate wins, unknown keys ignored.
    tokensUsed.push('DEVICE-TOKEN-MARKER-ci');
    binary.send(
      '{"push_wake":{"PLATFORM":"fcm","To\u212aen":"DEVICE-TOKEN-MARKER-x","token":"DEVICE-TOKEN-MARKER-ci","extra":{"a":[1]}}}',
    );
    const [line] = await outcomeLines(relay, 1);
    expect(line).toMatchObject({ msg: 'push_wake_sent', token_fp: tokenFingerprint('DEVICE-TOKEN-MARKER-ci') });
    expect(JSON.parse(g.sends()[0]!.body)).toEqual({
      message: { token: 'DEVICE-TOKEN-MARKER-ci', android: { priority: 'HIGH' } },
    });
    expect(await cells(relay)).toEqual({ ...zero, sent: 1 });
    expect(binary.closed).toBeUndefined();
  });

  it("a stalled send never blocks the binary's read loop, and survives the binary leaving", async () => {
    const relay = await boot(10_000);
    g.fcm.handler = (_r, res) => g.fcm.stall(res);
    const binary = await connectBinary(relay, 'push-loop');
    const phone = await connectPhone(relay, 'push-loop');
    const connId = await phoneConnId(phone, binary);
    send(binary, device('loop'));
    await waitFor(() => g.fcm.stalled.length === 1, 3_000, 'the send to stall');
    binary.send(`{"conn_id":"${connId}","frame":{"after":"wake"}}`);
    expect(await phone.message(1)).toBe('{"after":"wake"}');
    binary.close();
    await waitFor(() => lines(relay, 'server_released').length === 1, 3_000, 'the binary to leave');
    expect(relay.relay.push.inFlightCount).toBe(1);
    g.fcm.release((res) => json(res, 200, { name: MESSAGE_NAME }));
    const [line] = await outcomeLines(relay, 1);
    expect(line).toMatchObject({ msg: 'push_wake_sent', server_id: 'push-loop', fcm_message_id: MESSAGE_NAME });
  });
});

describe('shutdown', () => {
  it('closing the waker after the drain cancels every stalled send: send_failed and one line each', async () => {
    const relay = await boot(10_000);
    g.fcm.handler = (_r, res) => g.fcm.stall(res);
    const binary = await connectBinary(relay, 'push-shut');
    for (let i = 0; i < 3; i++) send(binary, device(`shut${i}`));
    await waitFor(() => g.fcm.stalled.length === 3, 3_000, '3 stalled sends');
    expect(await relay.relay.drain(2_000)).toBe(true);
    // The drain itself does not touch the sends.
    expect(relay.relay.push.inFlightCount).toBe(3);
    const t0 = Date.now();
    await relay.relay.push.close(2_000);
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(relay.relay.push.inFlightCount).toBe(0);
    const out = await outcomeLines(relay, 3);
    expect(out).toHaveLength(3);
    for (const l of out)
      expect(l).toMatchObject({
        level: 'WARN',
        msg: 'push_wake_send_failed',
        server_id: 'push-shut',
        err: CANCELLED_TEXT,
      });
    expect(new Set(out.map((l) => l['token_fp'])).size).toBe(3);
    expect(await cells(relay)).toEqual({ ...zero, send_failed: 3 });
    // Closed: new wakes are refused as push off, counting nothing.
    relay.relay.push.wake(
      'push-shut',
      'server-push-shut-00000000',
      Buffer.from('{"platform":"fcm","token":"DEVICE-TOKEN-MARKER-late"}'),
    );
    expect(lines(relay, 'binary_forwarder_push_wake_dropped').at(-1)).toMatchObject({ err: PUSH_OFF });
    expect(relay.relay.push.enabled).toBe(false);
    expect(await cells(relay)).toEqual({ ...zero, send_failed: 3 });
    tokensUsed.push('DEVICE-TOKEN-MARKER-late');
  });

  it('a send waiting on a stalled token fetch is cancelled as send_failed, not token_fetch_failed', async () => {
    const relay = await boot(10_000);
    g.token.handler = (_r, res) => g.token.stall(res);
    const binary = await connectBinary(relay, 'push-shut-tok');
    send(binary, device('st1'));
    send(binary, device('st2'));
    await waitFor(() => g.token.stalled.length === 1, 3_000, 'the token fetch to stall');
    await relay.relay.drain(2_000);
    await relay.relay.push.close(2_000);
    const out = await outcomeLines(relay, 2);
    for (const l of out) expect(l).toMatchObject({ msg: 'push_wake_send_failed', err: CANCELLED_TEXT });
    expect(await cells(relay)).toEqual({ ...zero, send_failed: 2 });
    expect(g.fcm.requests).toHaveLength(0);
  });
});

describe('push off', () => {
  it('without credentials every wake is refused "push off" and the family is absent', async () => {
    const r = await startRelay();
    relays.push(r);
    const binary = await connectBinary(r, 'push-off');
    send(binary, device('off'));
    await waitFor(() => lines(r, 'binary_forwarder_push_wake_dropped').length === 1, 3_000, 'the refusal');
    expect(lines(r, 'binary_forwarder_push_wake_dropped')[0]).toMatchObject({ server_id: 'push-off', err: PUSH_OFF });
    expect(await r.scrape()).not.toContain('push_wakes');
    expect(r.relay.push.enabled).toBe(false);
    expect(g.token.requests).toHaveLength(0);
  });
});

describe('parsePushWake (Go encoding/json semantics)', () => {
  it.each<[string, string | null]>([
    ['{"platform":"fcm","token":"t"}', 't'],
    [' { "token" : "t" , "platform" : "fcm" } ', 't'],
    ['{"Platform":"fcm","TOKEN":"t"}', 't'],
    ['{"platform":"fcm","to\u212aen":"k"}', 'k'],
    ['{"platform":"fcm","token":"a","token":"b"}', 'b'],
    ['{"platform":"fcm","token":"a","token":null}', 'a'],
    ['{"platform":"fcm","token":"\\u0041\\n"}', 'A\n'],
    ['{"platform":"fcm","token":"t","other":{"x":[1,2,{"y":null}]}}', 't'],
    ['{"platform":"fcm","token":"t","platform":"apns"}', null],
    ['{"platform":"fcm ","token":"t"}', null],
    ['{"platform":"fcm","token":""}', null],
    ['{"platform":"fcm","token":true}', null],
    ['{"platform":"fcm","token":{}}', null],
    ['{"platform":null,"token":"t"}', null],
    ['{"platforms":"fcm","token":"t"}', null],
    ['{}', null],
    ['[]', null],
    ['"fcm"', null],
    ['1', null],
    ['true', null],
  ])('%s', (raw, expected) => {
    expect(parsePushWake(Buffer.from(raw))).toBe(expected);
  });

  it('token_fp is the first 8 lowercase hex chars of SHA-256', () => {
    expect(tokenFingerprint('abc')).toBe('ba7816bf');
  });
});
