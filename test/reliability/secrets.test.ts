// Reliability / security: secrets never reach a log (issue #5). Every scenario type is driven with
// planted marker strings — in tokens, request headers, query strings, request bodies, frames both
// ways, malformed envelopes, push_wake tokens, close directives, close reasons, oversized and
// stalled messages, the FCM service-account key, FCM/OAuth replies and the OTLP exporter's headers
// — and every captured log (the in-process relay's lines and the daemon's stderr/stdout) is
// searched for every marker. The Prometheus scrape and every HTTP error body are searched too
// (there even the server-id and device name, which logs carry by design, must not appear).
//
// Logged by design and therefore NOT markers here (docs/operations.md, "Keys"): server_id, device_name,
// binary_version (on success only), conn_id of an unknown-conn_id envelope, and — only with
// --trust-x-forwarded-for — the left-most X-Forwarded-For entry of a rate-limited request.

import { generateKeyPairSync } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import WebSocket from 'ws';
import { afterAll, describe, expect, it } from 'vitest';
import { startOtlpReceiver, type OtlpReceiver } from '../helpers/otlp-receiver.js';
import { cleanEnv, freePort, runDaemon, startDaemon } from '../helpers/daemon.js';
import {
  clientFrame,
  closePayload,
  figure,
  headerLines,
  rawRequest,
  RawWs,
  UPGRADE_HEADERS,
} from '../helpers/reliability.js';
import {
  binaryHeaders,
  connectBinary,
  connectPhone,
  httpGet,
  phoneConnId,
  phoneHeaders,
  startRelay,
  TestClient,
  upgradeStatus,
} from '../helpers/relay.js';
import { sleep, waitFor, withTimeout } from '../helpers/wait.js';

/** Every value that must never appear in a log line (nor in a scrape or an error body). */
const M = {
  token: 'MRK-PAIRING-TOKEN-7f3a',
  ua: 'MRK-USER-AGENT/9.1',
  authz: 'MRK-AUTHZ-BEARER-55',
  cookie: 'MRK-COOKIE-SID-91',
  custom: 'MRK-CUSTOM-HEADER-08',
  xffTail: 'MRK-XFF-TAIL-44',
  wsKeyB64: Buffer.from('MRK-WSKEY-MARKER').toString('base64'), // a valid 16-byte Sec-WebSocket-Key
  badKey: 'MRK-BAD-WSKEY-12',
  subproto: 'mrk-subproto-33',
  query: 'MRK-QUERY-STRING-61',
  body: 'MRK-HTTP-BODY-72',
  big431: 'MRK-OVERSIZE-HEADER-13',
  p2b: 'MRK-PAYLOAD-PHONE-TO-BINARY',
  b2p: 'MRK-PAYLOAD-BINARY-TO-PHONE',
  malformed: 'MRK-MALFORMED-ENVELOPE',
  unknownKey: 'MRK-UNKNOWN-KEY-VALUE',
  pushToken: 'MRK-FCM-DEVICE-TOKEN-0ab1',
  directive: 'MRK-DIRECTIVE-FRAME',
  nonJson: 'MRK-NON-JSON-FRAME',
  badUtf8: 'MRK-INVALID-UTF8-FRAME',
  oversize: 'MRK-OVERSIZE-FRAME',
  stalled: 'MRK-STALLED-PARTIAL-FRAME',
  closeReason: 'MRK-CLOSE-REASON',
  conflictVersion: 'MRK-CONFLICT-VERSION-3.3',
} as const;
/** In logs by design, but never in a scrape or an error body. */
const SCRAPE_ONLY = { serverId: 'MRK-SERVERID-ALPHA', device: 'MRK-DEVICE-NAME' } as const;

function leaks(text: string, markers: Record<string, string>): string[] {
  return Object.entries(markers)
    .filter(([, v]) => text.includes(v))
    .map(([k]) => k);
}

describe('in-process relay: every scenario type, markers everywhere, nothing in the logs', () => {
  it('drives both endpoints and every refusal, routing, error and teardown path; the log text contains none of the markers', async () => {
    const r = await startRelay({
      trustXForwardedFor: true,
      rateLimitBurst: 3,
      maxConnections: 8,
      maxPhonesPerServer: 2,
      messageReadTimeoutMs: 300,
      probeTimeoutMs: 300,
    });
    const bodies: string[] = [];
    const clients: TestClient[] = [];
    let ip = 0;
    /** Every request comes from its own XFF address (burst 3 per address) unless told otherwise. */
    const hostile = (extra: Record<string, string> = {}): Record<string, string> => ({
      'User-Agent': M.ua,
      Authorization: `Bearer ${M.authz}`,
      Cookie: `sid=${M.cookie}`,
      'X-Custom': M.custom,
      'X-Forwarded-For': `10.77.${(++ip >> 8) & 255}.${ip & 255}, ${M.xffTail}`,
      ...extra,
    });
    const sid = SCRAPE_ONLY.serverId;
    const phoneExtra = (extra: Record<string, string> = {}): Record<string, string> =>
      hostile({ 'X-Pyrycode-Token': M.token, 'X-Pyrycode-Device-Name': SCRAPE_ONLY.device, ...extra });
    try {
      // Both endpoints, with every hostile header (and a subprotocol offer).
      const binary = await connectBinary(r, sid, hostile({ 'Sec-WebSocket-Protocol': M.subproto }));
      clients.push(binary);
      const p1 = await connectPhone(r, sid, phoneExtra());
      clients.push(p1);
      const id1 = await phoneConnId(p1, binary);

      // Frames both ways.
      p1.send(`{"secret":"${M.p2b}"}`);
      await binary.message(2);
      binary.send(`{"conn_id":"${id1}","frame":{"secret":"${M.b2p}"}}`);
      expect(await p1.message(1)).toContain(M.b2p);

      // Malformed envelopes carrying markers in every position, unknown keys, push wakes (push is
      // off in-process: refused, token never logged).
      const malformed = [
        `${M.malformed} not json`,
        `{"conn_id":"${id1}","close_code":"${M.malformed}"}`,
        `{"conn_id":["${M.malformed}"],"frame":1}`,
        `{"conn_id":"${id1}","frame":{"x":"${M.malformed}"}`,
        `["${M.malformed}"]`,
        `{"frame":"${M.malformed}"}`,
        `{"conn_id":"${id1}","frame":1,"${M.unknownKey}":"\\u${'zz'}"}`,
        `{"${M.unknownKey}":1}`,
      ];
      for (const m of malformed) binary.send(m);
      binary.send(`{"push_wake":{"platform":"fcm","token":"${M.pushToken}"}}`);
      binary.send(`{"push_wake":{"platform":"apns","token":"${M.pushToken}"}}`);
      binary.send(`{"push_wake":"${M.pushToken}"}`);
      binary.send(`{"conn_id":"${id1}","frame":{"w":1},"push_wake":{"token":"${M.pushToken}"}}`);
      await p1.message(2);
      await waitFor(
        () => r.logs.filter((l) => l.msg === 'binary_forwarder_unmarshal_err').length === malformed.length,
        3_000,
        'unmarshal_err lines',
      );
      await waitFor(
        () => r.logs.filter((l) => l.msg === 'binary_forwarder_push_wake_dropped').length === 3,
        3_000,
        'push_wake_dropped lines',
      );

      // Close directive with a final frame; a phone that closes with a reason.
      const p2 = await connectPhone(r, sid, phoneExtra());
      clients.push(p2);
      const id2 = await phoneConnId(p2, binary);
      binary.send(`{"conn_id":"${id2}","close_code":4401,"frame":{"bye":"${M.directive}"}}`);
      expect((await p2.waitClose()).code).toBe(4401);
      const p3 = await connectPhone(r, sid, phoneExtra());
      clients.push(p3);
      await phoneConnId(p3, binary);
      p3.close(4000, M.closeReason);
      await p3.waitClose();

      // Phones that misbehave: non-JSON text, invalid UTF-8 (binary opcode), oversized, stalled.
      const p4 = await connectPhone(r, sid, phoneExtra());
      clients.push(p4);
      p4.send(`{${M.nonJson}`);
      expect((await p4.waitClose()).code).toBe(1000);
      const p5 = await connectPhone(r, sid, phoneExtra());
      clients.push(p5);
      p5.ws.send(Buffer.concat([Buffer.from(`["${M.badUtf8}`), Buffer.from([0xc3, 0x28]), Buffer.from('"]')]), {
        binary: true,
      });
      expect((await p5.waitClose()).code).toBe(1000);
      const p6 = await connectPhone(r, sid, phoneExtra());
      clients.push(p6);
      p6.send(`"${M.oversize}${'o'.repeat(262_144)}"`);
      expect((await p6.waitClose()).code).toBe(1009);
      const stalled = await RawWs.open(r.port, '/v1/client', { ...phoneHeaders(sid), ...phoneExtra() });
      stalled.write(clientFrame(0x1, Buffer.from(`{"s":"${M.stalled}`), { announced: 120 }));
      await waitFor(() => stalled.closeFrame(), 3_000, 'read deadline');
      stalled.destroy();

      // Refusals: header gate 400 (token present, UA missing), 404, 4409 with a version marker,
      // 4429, 429 via XFF, 503 with a query marker, 431, 426 with a body, bad handshake key.
      const gate = await upgradeStatus(r, '/v1/client', {
        'X-Pyrycode-Server': sid,
        'X-Pyrycode-Token': M.token,
        'X-Forwarded-For': `10.78.0.1, ${M.xffTail}`,
      });
      expect(gate.status).toBe(400);
      bodies.push(gate.body);
      const orphan = new TestClient(`${r.wsUrl}/v1/client`, phoneExtra({ 'X-Pyrycode-Server': 'nobody-home' }));
      clients.push(orphan);
      expect((await orphan.waitClose()).code).toBe(4404);
      const rival = new TestClient(
        `${r.wsUrl}/v1/server`,
        hostile({ 'X-Pyrycode-Server': sid, 'X-Pyrycode-Version': M.conflictVersion }),
      );
      clients.push(rival);
      expect((await rival.waitClose()).code).toBe(4409);
      const limited = {
        'User-Agent': M.ua,
        'X-Pyrycode-Server': sid,
        'X-Pyrycode-Token': M.token,
        'X-Forwarded-For': `198.51.100.9, ${M.xffTail}`,
      };
      for (let i = 0; i < 3; i++)
        bodies.push((await upgradeStatus(r, '/v1/client', { ...limited, 'User-Agent': '' })).body);
      const tooMany = await upgradeStatus(r, '/v1/client', limited);
      expect(tooMany.status).toBe(429);
      bodies.push(tooMany.body);
      // 4429: p1 plus one more is the per-server-id cap (2 here).
      const p7 = await connectPhone(r, sid, phoneExtra());
      clients.push(p7);
      const p8 = new TestClient(`${r.wsUrl}/v1/client`, { ...phoneHeaders(sid), ...phoneExtra() });
      clients.push(p8);
      expect((await p8.waitClose()).code).toBe(4429);
      p7.close(1000);
      await p7.waitClose();
      // Fill the connection cap (8) with binaries, then one more upgrade gets 503.
      const fillers: TestClient[] = [];
      for (let n = 0; r.relay.cap.used < 8; n++) {
        const f = await connectBinary(r, `filler-${n}`, hostile());
        fillers.push(f);
        clients.push(f);
      }
      const capped = await new Promise<{ status: number; body: string }>((resolve) => {
        const ws = new WebSocket(`${r.wsUrl}/v1/client?token=${M.query}`, { headers: phoneExtra() });
        ws.on('error', () => {});
        ws.once('unexpected-response', (_q, res) => {
          let b = '';
          res.on('data', (c: Buffer) => (b += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
        });
      });
      expect(capped.status).toBe(503);
      bodies.push(capped.body);
      for (const f of fillers) f.ws.terminate();
      await waitFor(() => r.relay.cap.used <= 2, 5_000, 'fillers gone');
      const big = await rawRequest(
        r.port,
        `GET /v1/server HTTP/1.1\r\nHost: x\r\n${headerLines(binaryHeaders('x'))}${UPGRADE_HEADERS}X-Big: ${M.big431}${'b'.repeat(70_000)}\r\n\r\n`,
      );
      expect(big.status).toBe(431);
      bodies.push(big.text);
      const post = await rawRequest(
        r.port,
        `POST /v1/server?q=${M.query} HTTP/1.1\r\nHost: x\r\n${headerLines(hostile({ 'X-Pyrycode-Server': 'post', 'X-Pyrycode-Version': '1' }))}Content-Length: ${M.body.length}\r\n\r\n${M.body}`,
        { untilStatus: true, waitMs: 2_000 },
      );
      expect(post.status).toBe(426);
      bodies.push(post.text);
      const badKey = await rawRequest(
        r.port,
        `GET /v1/server HTTP/1.1\r\nHost: x\r\n${headerLines(hostile({ 'X-Pyrycode-Server': 'k', 'X-Pyrycode-Version': '1' }))}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${M.badKey}\r\n\r\n`,
      );
      expect(badKey.status).toBe(400);
      bodies.push(badKey.text);
      // A handshake with a marker in a VALID key: accepted; the key is never logged either.
      const goodKey = await rawRequest(
        r.port,
        `GET /v1/server HTTP/1.1\r\nHost: x\r\n${headerLines(hostile({ 'X-Pyrycode-Server': 'wskey', 'X-Pyrycode-Version': '1' }))}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${M.wsKeyB64}\r\n\r\n`,
        { waitMs: 300 },
      );
      expect(goodKey.status).toBe(101);

      // Drain, so shutdown and teardown lines are in the capture too.
      const scrape = await r.scrape();
      const health = (await httpGet(`${r.httpUrl}/healthz`)).body;
      await r.close();

      const seen = new Set(r.logs.map((l) => l.msg));
      for (const event of [
        'server_claimed',
        'phone_registered',
        'binary_forwarder_unmarshal_err',
        'binary_forwarder_push_wake_dropped',
        'binary_forwarder_phone_closed',
        'phone_forwarder_marshal_err',
        'phone_register_no_server',
        'server_id_conflict',
        'phone_register_at_cap',
        'rate_limited',
        'conn_cap_reached',
        'phone_unregistered',
        'server_released',
      ])
        expect(seen.has(event), `scenario reached ${event}`).toBe(true);
      const text = r.logText();
      figure('secrets in-process: log lines searched / markers', `${r.logs.length} / ${Object.keys(M).length}`);
      expect(leaks(text, M), 'markers found in the relay log').toEqual([]);
      expect(leaks(scrape + health, { ...M, ...SCRAPE_ONLY }), 'markers found in /metrics or /healthz').toEqual([]);
      expect(leaks(bodies.join('\n'), { ...M, ...SCRAPE_ONLY }), 'markers found in error responses').toEqual([]);
      // The rate_limited line names the left-most XFF entry only (quoted), never the rest.
      expect(r.logs.find((l) => l.msg === 'rate_limited')).toMatchObject({ remote: '"198.51.100.9"' });
    } finally {
      for (const c of clients) c.ws.terminate();
      await r.close();
    }
  }, 30_000);
});

// ---------------------------------------------------------------------------------------------
// The daemon: FCM credentials, OAuth and FCM replies, OTLP exporter headers

interface Fake {
  server: Server;
  port: number;
  requests: { path: string; headers: IncomingMessage['headers']; body: string }[];
}

async function fakeHttp(
  handler: (n: number, req: IncomingMessage, body: string, res: ServerResponse) => void,
): Promise<Fake> {
  const requests: Fake['requests'] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      requests.push({ path: req.url ?? '', headers: req.headers, body });
      handler(requests.length, req, body, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const address = server.address();
  return { server, port: typeof address === 'object' && address !== null ? address.port : 0, requests };
}

const json = (res: ServerResponse, status: number, value: unknown): void => {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(value));
};

const D = {
  fcmEmail: 'mrk-fcm-client-email@mrk-project.iam.gserviceaccount.com',
  fcmKeyId: 'MRK-FCM-PRIVATE-KEY-ID-9c2e',
  fcmClientId: 'MRK-FCM-CLIENT-ID-553',
  accessToken: 'MRK-OAUTH-ACCESS-TOKEN-ya29',
  oauthError: 'MRK-OAUTH-ERROR-DESCRIPTION',
  fcmFreeText: 'MRK-FCM-ERROR-MESSAGE-FREE-TEXT',
  fcmName: 'MRK FCM NAME WITH SPACES',
  fcm500: 'MRK-FCM-500-BODY',
  otlpHeader: 'MRK-OTLP-HEADER-SECRET-e71',
  pushToken: 'MRK-DAEMON-DEVICE-TOKEN-4d',
  token: 'MRK-DAEMON-PAIRING-TOKEN',
  ua: 'MRK-DAEMON-UA/2.0',
  p2b: 'MRK-DAEMON-P2B',
  b2p: 'MRK-DAEMON-B2P',
} as const;

describe('daemon: FCM credentials, OAuth/FCM replies and OTLP headers never reach stderr', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterAll(async () => {
    for (const c of cleanups.splice(0)) await c();
  });

  it('a daemon with a valid-looking (wrong) service-account key, push wakes answered with hostile replies, and a failing OTLP exporter logs none of the markers', async () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const pemLines = pem.split('\n').filter((l) => l !== '' && !l.startsWith('-----'));
    const keyMarkers = { pem2: pemLines[1]!, pem10: pemLines[9]!, pemLast: pemLines[pemLines.length - 1]! };

    const token = await fakeHttp((n, _req, _body, res) => {
      if (n === 1) json(res, 400, { error: 'invalid_grant', error_description: D.oauthError });
      else json(res, 200, { access_token: D.accessToken, expires_in: 3600, token_type: 'Bearer' });
    });
    const fcm = await fakeHttp((n, _req, _body, res) => {
      if (n === 1) json(res, 200, { name: D.fcmName });
      else if (n === 2)
        json(res, 404, {
          error: {
            code: 404,
            status: 'NOT_FOUND',
            message: D.fcmFreeText,
            details: [{ '@type': 'type.googleapis.com/google.firebase.fcm.v1.FcmError', errorCode: 'UNREGISTERED' }],
          },
        });
      else {
        res.writeHead(500, { 'Content-Type': 'text/plain' });
        res.end(`${D.fcm500} ${D.fcmFreeText}`);
      }
    });
    const receiver: OtlpReceiver = await startOtlpReceiver();
    receiver.setStatus(401, `Unauthorized for Bearer ${D.otlpHeader}`);
    cleanups.push(() => new Promise<void>((resolve) => token.server.close(() => resolve())));
    cleanups.push(() => new Promise<void>((resolve) => fcm.server.close(() => resolve())));
    cleanups.push(() => receiver.close());

    const credentials = JSON.stringify({
      type: 'service_account',
      project_id: 'pyrycode-mobile',
      private_key_id: D.fcmKeyId,
      private_key: pem,
      client_email: D.fcmEmail,
      client_id: D.fcmClientId,
      token_uri: `http://127.0.0.1:${token.port}/token`,
    });
    const port = await freePort();
    const metricsPort = await freePort();
    const d = startDaemon(
      [
        '--insecure-listen',
        `127.0.0.1:${port}`,
        '--metrics-listen',
        `127.0.0.1:${metricsPort}`,
        '--shutdown-timeout',
        '2s',
      ],
      cleanEnv({
        PYRYCODE_RELAY_FCM_CREDENTIALS: credentials,
        PYRYCODE_RELAY_FCM_ENDPOINT: `http://127.0.0.1:${fcm.port}`,
        PYRYCODE_RELAY_FCM_TOKEN_URL: `http://127.0.0.1:${token.port}/token`,
        OTEL_METRICS_EXPORTER: 'otlp',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_EXPORTER_OTLP_HEADERS: `authorization=Bearer ${D.otlpHeader}`,
        OTEL_METRIC_EXPORT_INTERVAL: '200',
      }),
    );
    cleanups.push(() => d.stop());
    const clients: WebSocket[] = [];
    cleanups.push(() => {
      for (const c of clients) c.terminate();
    });
    await waitFor(
      async () => (await httpGet(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.status === 200,
      15_000,
      'daemon up',
      50,
    );

    const open = async (path: string, headers: Record<string, string>): Promise<{ ws: WebSocket; got: string[] }> => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { headers });
      ws.on('error', () => {});
      clients.push(ws);
      const got: string[] = [];
      ws.on('message', (m: Buffer) => got.push(m.toString()));
      await withTimeout(new Promise((resolve) => ws.once('open', resolve)), 5_000, `open ${path}`);
      return { ws, got };
    };
    const bin = await open('/v1/server', {
      ...binaryHeaders('daemon-secrets'),
      'User-Agent': D.ua,
      Authorization: `Bearer ${D.token}`,
    });
    // The phone is a raw client: its device name tries to forge log lines with a quote, '=' and a
    // raw U+2028 (logged by design, so it must arrive escaped, on one line).
    let phone!: RawWs;
    await waitFor(
      async () => {
        phone = await RawWs.open(port, '/v1/client', {
          ...phoneHeaders('daemon-secrets'),
          'X-Pyrycode-Token': D.token,
          'User-Agent': D.ua,
          'X-Pyrycode-Device-Name': 'Pixel" level=ERROR msg="forged_line\u2028level=ERROR msg=forged_line2',
        });
        cleanups.push(() => phone.destroy());
        await sleep(50);
        return !phone.isEnded && phone.closeFrame() === undefined;
      },
      5_000,
      'phone registered',
    );
    phone.sendText(`{"p2b":"${D.p2b}"}`);
    await waitFor(() => bin.got.length >= 1, 3_000, 'envelope at the binary');
    const connId = (JSON.parse(bin.got[0]!) as { conn_id: string }).conn_id;
    bin.ws.send(`{"conn_id":"${connId}","frame":{"b2p":"${D.b2p}"}}`);
    await waitFor(() => phone.frames().some((f) => f.opcode === 0x1), 3_000, 'frame at the phone');
    bin.ws.send(`{"conn_id":"${connId}","frame":{"x":"${D.b2p}"}`); // malformed

    // Four push wakes: token fetch refused, sent (name rejected), UNREGISTERED, 500.
    for (let i = 0; i < 4; i++) {
      bin.ws.send(`{"push_wake":{"platform":"fcm","token":"${D.pushToken}"}}`);
      await waitFor(
        () => (d.stderr().match(/msg=push_wake_sen(t|d_failed)/g) ?? []).length >= i + 1,
        8_000,
        `wake ${i + 1} outcome`,
        20,
      );
    }
    await waitFor(() => d.stderr().includes('otlp_export_failed'), 8_000, 'otlp_export_failed line', 50);
    const scrape = (await httpGet(`http://127.0.0.1:${metricsPort}/metrics`)).body;
    phone.write(clientFrame(0x8, closePayload(4000, D.p2b)));
    await sleep(100);
    d.child.kill('SIGTERM');
    expect((await d.waitExit(10_000)).code).toBe(0);

    // The markers were really in play: the fakes received them.
    expect(fcm.requests.some((q) => String(q.headers.authorization).includes(D.accessToken))).toBe(true);
    expect(fcm.requests.some((q) => q.body.includes(D.pushToken))).toBe(true);
    expect(receiver.requests.some((q) => String(q.headers.authorization).includes(D.otlpHeader))).toBe(true);

    const out = d.stderr() + d.stdout();
    const lines = d
      .stderr()
      .split('\n')
      .filter((l) => l !== '');
    figure('secrets daemon: stderr lines searched', lines.length);
    for (const l of lines)
      expect(l, 'one well-formed text line per event').toMatch(/^time=\S+ level=(INFO|WARN|ERROR) msg=/);
    expect(lines.filter((l) => l.includes('forged_line'))).toHaveLength(1); // the phone_registered line only
    expect(lines.find((l) => l.includes('forged_line'))).toMatch(
      /msg=phone_registered .*device_name="Pixel\\" level=ERROR msg=\\"forged_line\\u2028level=ERROR msg=forged_line2"/,
    );
    for (const event of [
      'push_wake_sent',
      'push_wake_send_failed',
      'otlp_export_failed',
      'binary_forwarder_unmarshal_err',
      'phone_registered',
      'shutdown complete',
    ]) {
      expect(out.includes(event), `daemon reached ${event}`).toBe(true);
    }
    expect(leaks(out, { ...D, ...keyMarkers }), 'markers found in daemon output').toEqual([]);
    expect(leaks(scrape, { ...D, ...keyMarkers }), 'markers found in the daemon scrape').toEqual([]);
  }, 60_000);

  it('refused credentials (bad JSON, a marker-bearing PEM that is not a key) exit 2 without echoing any part of the value', async () => {
    const cases = [
      `{"type":"service_account","client_email":"${D.fcmEmail}","private_key":"-----BEGIN PRIVATE KEY-----\\n${D.fcmKeyId}\\n-----END PRIVATE KEY-----\\n"}`,
      `{"type":"service_account","client_email":"${D.fcmEmail}",${D.fcmClientId}`,
      `not json at all ${D.fcmKeyId}`,
    ];
    for (const value of cases) {
      const port = await freePort();
      const res = await runDaemon(
        ['--insecure-listen', `127.0.0.1:${port}`, '--metrics-listen', ''],
        cleanEnv({ PYRYCODE_RELAY_FCM_CREDENTIALS: value }),
        15_000,
      );
      expect(res.code).toBe(2);
      expect(res.stderr).toContain('PYRYCODE_RELAY_FCM_CREDENTIALS');
      expect(
        leaks(res.stderr + res.stdout, { email: D.fcmEmail, keyId: D.fcmKeyId, clientId: D.fcmClientId }),
        'markers in a refusal',
      ).toEqual([]);
    }
  }, 60_000);
});
