// End-to-end tests of the public listener's request handling with real ws clients and raw TCP over
// 127.0.0.1 (docs/protocol.md, "What happens to an upgrade request, in order";
// docs/operations.md, "Health and readiness checks"; docs/metrics.md, "When each series moves";
// docs/decisions.md, "HTTP and the WebSocket handshake").

import { describe, expect, it } from 'vitest';
import {
  httpGet,
  type ParsedResponse,
  rawExchange,
  rawHttp,
  requestText,
  upgradeStatus,
  WS_ACCEPT,
  WS_HANDSHAKE,
  WS_KEY,
} from '../helpers/http.js';
import {
  binaryHeaders,
  HEALTHZ_KEYS,
  logFields,
  logsOf,
  phoneConnId,
  phoneHeaders,
  useRelays,
} from '../helpers/relays.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { type Endpoint, expectCounters, registerCell, upgradeCell } from '../helpers/scrape.js';

// ---------------------------------------------------------------------------------------------
// Local helpers
// ---------------------------------------------------------------------------------------------

const { boot, binary, phone, client } = useRelays();

function one(res: ParsedResponse, name: string): string | undefined {
  const v = res.headers.get(name.toLowerCase());
  if (v === undefined) return undefined;
  expect(v, `header ${name} appears once`).toHaveLength(1);
  return v[0];
}

const pairs = (h: Record<string, string>): [string, string][] => Object.entries(h);

function expectErrorHeaders(headers: Record<string, string | string[] | undefined>): void {
  expect(headers['content-type']).toBe('text/plain; charset=utf-8');
  expect(headers['x-content-type-options']).toBe('nosniff');
}

function expectRawErrorHeaders(res: ParsedResponse): void {
  expect(one(res, 'content-type')).toBe('text/plain; charset=utf-8');
  expect(one(res, 'x-content-type-options')).toBe('nosniff');
}

// ---------------------------------------------------------------------------------------------
// 2.5 outcome matrix
// ---------------------------------------------------------------------------------------------

describe('outcome matrix (2.5) with exact metric cells', () => {
  it('fresh boot: all 17 control-plane cells exist at 0', async () => {
    const r = await boot();
    await expectCounters(r, {});
  });

  it('/v1/server success: 101, accept{server}, server_claimed log', async () => {
    const r = await boot();
    await binary(r, 'srv-ok');
    await expectCounters(r, { [upgradeCell('server', 'accept')]: 1 });
    const claimed = logsOf(r, 'server_claimed');
    expect(claimed).toHaveLength(1);
    expect(claimed[0]!.level).toBe('INFO');
    expect(logFields(claimed[0]!)).toEqual({ server_id: 'srv-ok', binary_version: '1.2.3', remote: '127.0.0.1' });
  });

  it('/v1/client success: 101, accept{client}, phone_registered log', async () => {
    const r = await boot();
    const b = await binary(r, 'srv-ok');
    const p = await phone(r, 'srv-ok', { 'X-Pyrycode-Device-Name': 'Pixel 9' });
    const connId = await phoneConnId(p, b);
    expect(connId).toMatch(/^client-srv-ok-[0-9a-f]{8}$/);
    await expectCounters(r, { [upgradeCell('server', 'accept')]: 1, [upgradeCell('client', 'accept')]: 1 });
    const reg = logsOf(r, 'phone_registered');
    expect(reg).toHaveLength(1);
    expect(logFields(reg[0]!)).toEqual({
      server_id: 'srv-ok',
      conn_id: connId,
      device_name: 'Pixel 9',
      remote: '127.0.0.1',
    });
  });

  it('/v1/server held by a live binary: 4409 "server-id already claimed", reject_409 + server_in_use', async () => {
    const r = await boot({ probeTimeoutMs: 300 });
    const a = await binary(r, 'srv-x');
    const b = client(r, '/v1/server', binaryHeaders('srv-x', { 'X-Pyrycode-Version': '9.9.9' }));
    await b.open();
    expect(await b.waitClose()).toEqual({ code: 4409, reason: 'server-id already claimed' });
    await expectCounters(r, {
      [upgradeCell('server', 'accept')]: 1,
      [upgradeCell('server', 'reject_409')]: 1,
      [registerCell('server_in_use')]: 1,
    });
    const conflict = logsOf(r, 'server_id_conflict');
    expect(conflict).toHaveLength(1);
    expect(logFields(conflict[0]!)).toEqual({ server_id: 'srv-x', remote: '127.0.0.1' });
    expect(a.closed).toBeUndefined();
  });

  it('/v1/server held by an unresponsive binary: takeover counts accept twice', async () => {
    const r = await boot({ probeTimeoutMs: 300 });
    const a = client(r, '/v1/server', binaryHeaders('srv-t'), { autoPong: false });
    await a.open();
    await waitFor(() => r.relay.registry.binaryFor('srv-t') !== undefined, 3_000, 'claim');
    const b = await binary(r, 'srv-t');
    expect(await a.waitClose()).toEqual({ code: 1011, reason: 'heartbeat timeout' });
    expect(b.closed).toBeUndefined();
    await expectCounters(r, { [upgradeCell('server', 'accept')]: 2 });
    const order = r.logs.map((l) => l.msg).filter((m) => m === 'server_id_takeover' || m === 'server_claimed');
    expect(order).toEqual(['server_claimed', 'server_id_takeover', 'server_claimed']);
  });

  it('/v1/server probe interrupted by shutdown: 101 then close 1000 with empty reason, nothing counted or logged', async () => {
    const r = await boot({ probeTimeoutMs: 10_000 });
    const a = client(r, '/v1/server', binaryHeaders('srv-s'), { autoPong: false });
    await a.open();
    await waitFor(() => r.relay.registry.binaryFor('srv-s') !== undefined, 3_000, 'claim');
    const b = client(r, '/v1/server', binaryHeaders('srv-s'));
    await b.open();
    await sleep(50); // the probe is running (10 s timeout)
    const drained = r.relay.drain(3_000);
    expect(await b.waitClose()).toEqual({ code: 1000, reason: '' });
    expect(await a.waitClose()).toEqual({ code: 1001, reason: 'shutting down' });
    await drained;
    await expectCounters(r, { [upgradeCell('server', 'accept')]: 1 });
    expect(logsOf(r, 'server_id_conflict')).toEqual([]);
    expect(logsOf(r, 'server_id_takeover')).toEqual([]);
    expect(logsOf(r, 'server_claimed')).toHaveLength(1);
  });

  it('/v1/client with no binary: 4404 "no server with that id", reject_404 + no_server', async () => {
    const r = await boot();
    const p = client(r, '/v1/client', phoneHeaders('nobody'));
    await p.open();
    expect(await p.waitClose()).toEqual({ code: 4404, reason: 'no server with that id' });
    await expectCounters(r, { [upgradeCell('client', 'reject_404')]: 1, [registerCell('no_server')]: 1 });
    const l = logsOf(r, 'phone_register_no_server');
    expect(l).toHaveLength(1);
    expect(logFields(l[0]!)).toEqual({ server_id: 'nobody', remote: '127.0.0.1' });
  });

  it('/v1/client at the phone cap: 4429 "too many phones for server-id", reject_429 + phones_at_cap', async () => {
    const r = await boot({ maxPhonesPerServer: 1 });
    await binary(r, 'srv-c');
    await phone(r, 'srv-c');
    const p2 = client(r, '/v1/client', phoneHeaders('srv-c'));
    await p2.open();
    expect(await p2.waitClose()).toEqual({ code: 4429, reason: 'too many phones for server-id' });
    await expectCounters(r, {
      [upgradeCell('server', 'accept')]: 1,
      [upgradeCell('client', 'accept')]: 1,
      [upgradeCell('client', 'reject_429')]: 1,
      [registerCell('phones_at_cap')]: 1,
    });
    const l = logsOf(r, 'phone_register_at_cap');
    expect(l).toHaveLength(1);
    expect(logFields(l[0]!)).toEqual({ server_id: 'srv-c', remote: '127.0.0.1' });
  });

  it('missing header: 400 on both endpoints, reject_headers only, no register_failures, no log', async () => {
    const r = await boot();
    const before = r.logs.length;
    const s = await upgradeStatus(r, '/v1/server', { 'X-Pyrycode-Server': 'a', 'User-Agent': 'u' });
    expect(s.status).toBe(400);
    expect(s.body).toBe('\n');
    expectErrorHeaders(s.headers);
    const c = await upgradeStatus(r, '/v1/client', { 'X-Pyrycode-Server': 'a', 'User-Agent': 'u' });
    expect(c.status).toBe(400);
    expect(c.body).toBe('\n');
    expectErrorHeaders(c.headers);
    await expectCounters(r, {
      [upgradeCell('server', 'reject_headers')]: 1,
      [upgradeCell('client', 'reject_headers')]: 1,
    });
    expect(r.logs.slice(before)).toEqual([]);
    expect(r.relay.registry.binaryFor('a')).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------
// 2.3 header gate
// ---------------------------------------------------------------------------------------------

describe('header gate (2.3)', () => {
  const required: Record<Endpoint, string[]> = {
    server: ['X-Pyrycode-Server', 'X-Pyrycode-Version', 'User-Agent'],
    client: ['X-Pyrycode-Server', 'X-Pyrycode-Token', 'User-Agent'],
  };
  const full = (e: Endpoint, id: string): Record<string, string> =>
    e === 'server' ? binaryHeaders(id) : phoneHeaders(id);

  for (const endpoint of ['server', 'client'] as Endpoint[]) {
    it(`/v1/${endpoint}: each required header missing, empty or whitespace-only -> 400 "\\n"`, async () => {
      const r = await boot();
      const logsBefore = r.logs.length;
      let n = 0;
      for (const name of required[endpoint]) {
        for (const variant of ['missing', 'empty', 'whitespace'] as const) {
          const headers = pairs(full(endpoint, 'gate-id')).filter(([k]) => k !== name);
          if (variant === 'empty') headers.push([name, '']);
          if (variant === 'whitespace') headers.push([name, ' \t  ']);
          const res = await rawHttp(r.port, requestText('GET', `/v1/${endpoint}`, [...headers, ...WS_HANDSHAKE]));
          expect(res.status, `${name} ${variant}`).toBe(400);
          expect(res.body, `${name} ${variant}`).toBe('\n');
          expectRawErrorHeaders(res);
          n++;
          await expectCounters(r, { [upgradeCell(endpoint, 'reject_headers')]: n });
        }
      }
      expect(n).toBe(9);
      // The first value counts: an empty first X-Pyrycode-Server is a 400 even with a second one.
      const dup = pairs(full(endpoint, 'gate-id')).filter(([k]) => k !== 'X-Pyrycode-Server');
      const res = await rawHttp(
        r.port,
        requestText('GET', `/v1/${endpoint}`, [
          ['X-Pyrycode-Server', ''],
          ['X-Pyrycode-Server', 'gate-id'],
          ...dup,
          ...WS_HANDSHAKE,
        ]),
      );
      expect(res.status).toBe(400);
      await expectCounters(r, { [upgradeCell(endpoint, 'reject_headers')]: 10 });
      // Deliberately silent, registry untouched, cap slot returned.
      expect(r.logs.slice(logsBefore)).toEqual([]);
      expect(r.relay.registry.binaryFor('gate-id')).toBeUndefined();
      expect(r.relay.registry.counts()).toEqual({ binaries: 0, phones: 0 });
      expect(r.relay.cap.used).toBe(0);
    });
  }

  it('header names are case-insensitive', async () => {
    const r = await boot();
    const b = client(r, '/v1/server', {
      'x-pyrycode-server': 'ci-id',
      'X-PYRYCODE-VERSION': '2.0.0',
      'user-agent': 'ua',
    });
    await b.open();
    await waitFor(() => r.relay.registry.binaryFor('ci-id') !== undefined, 3_000, 'claim');
    await expectCounters(r, { [upgradeCell('server', 'accept')]: 1 });
  });

  it('optional X-Pyrycode-Device-Name absent is fine (accepted, logged as empty)', async () => {
    const r = await boot();
    await binary(r, 'dn-id');
    const p = client(r, '/v1/client', phoneHeaders('dn-id'));
    await p.open();
    await waitFor(() => r.relay.registry.counts().phones === 1, 3_000, 'phone registered');
    expect(p.closed).toBeUndefined();
    await expectCounters(r, { [upgradeCell('server', 'accept')]: 1, [upgradeCell('client', 'accept')]: 1 });
    const reg = logsOf(r, 'phone_registered');
    expect(reg).toHaveLength(1);
    expect(reg[0]!.device_name).toBe('');
  });

  it('the token and the User-Agent never reach a log line', async () => {
    const r = await boot();
    await binary(r, 'tok-id', { 'User-Agent': 'UA-SECRET-1' });
    await phone(r, 'tok-id', { 'X-Pyrycode-Token': 'TOKEN-SECRET-2', 'User-Agent': 'UA-SECRET-3' });
    const p = client(r, '/v1/client', phoneHeaders('nobody', { 'X-Pyrycode-Token': 'TOKEN-SECRET-4' }));
    await p.waitClose();
    const text = r.logText();
    for (const secret of ['UA-SECRET-1', 'TOKEN-SECRET-2', 'UA-SECRET-3', 'TOKEN-SECRET-4'])
      expect(text).not.toContain(secret);
  });
});

// ---------------------------------------------------------------------------------------------
// 6.1-6.2 rate limiting
// ---------------------------------------------------------------------------------------------

describe('rate limiting (6.1, 6.2)', () => {
  it('burst 3: the 4th attempt is 429 across both endpoints; 400s consume tokens; /healthz is exempt', async () => {
    const r = await boot({ rateLimitBurst: 3, rateLimitIntervalMs: 60_000 });
    // 1: /v1/client stillborn 4404
    const p = client(r, '/v1/client', phoneHeaders('rl-id'));
    expect((await p.waitClose()).code).toBe(4404);
    // 2: /v1/server header-gate 400 (consumes a token)
    expect((await upgradeStatus(r, '/v1/server', { 'User-Agent': 'u' })).status).toBe(400);
    // 3: /v1/server accepted
    await binary(r, 'rl-id');
    // 4: /v1/client -> 429
    const denied = await upgradeStatus(r, '/v1/client', phoneHeaders('rl-id'));
    expect(denied.status).toBe(429);
    expect(denied.body).toBe('\n');
    expectErrorHeaders(denied.headers);
    expect(denied.headers['retry-after']).toBeUndefined();
    await expectCounters(r, {
      [upgradeCell('client', 'reject_404')]: 1,
      [registerCell('no_server')]: 1,
      [upgradeCell('server', 'reject_headers')]: 1,
      [upgradeCell('server', 'accept')]: 1,
      [upgradeCell('client', 'reject_rate_limit')]: 1,
      [registerCell('ratelimit')]: 1,
    });
    // 5: /v1/server -> 429 as well (shared bucket)
    const denied2 = await upgradeStatus(r, '/v1/server', binaryHeaders('other'));
    expect(denied2.status).toBe(429);
    expect(denied2.body).toBe('\n');
    // 6: a plain (non-upgrade) request to an endpoint goes through the same limiter
    const plain = await httpGet(`${r.httpUrl}/v1/server`, { headers: binaryHeaders('other') });
    expect(plain.status).toBe(429);
    expect(plain.body).toBe('\n');
    expectErrorHeaders(plain.headers);
    await expectCounters(r, {
      [upgradeCell('client', 'reject_404')]: 1,
      [registerCell('no_server')]: 1,
      [upgradeCell('server', 'reject_headers')]: 1,
      [upgradeCell('server', 'accept')]: 1,
      [upgradeCell('client', 'reject_rate_limit')]: 1,
      [upgradeCell('server', 'reject_rate_limit')]: 2,
      [registerCell('ratelimit')]: 3,
    });
    const rl = logsOf(r, 'rate_limited');
    expect(rl).toHaveLength(3);
    for (const line of rl) {
      expect(line.level).toBe('WARN');
      expect(logFields(line)).toEqual({ remote: '"127.0.0.1"' });
    }
    // A 429 never takes a cap slot; only the binary holds one.
    expect(r.relay.cap.used).toBe(1);
    // /healthz is not rate limited.
    for (let i = 0; i < 5; i++) expect((await httpGet(`${r.httpUrl}/healthz`)).status).toBe(200);
  });

  it('--trust-x-forwarded-for: the left-most XFF entry is the key; absent or empty entry falls back to the socket', async () => {
    const r = await boot({ rateLimitBurst: 1, rateLimitIntervalMs: 60_000, trustXForwardedFor: true });
    const gateFail = (xff?: string): Promise<{ status: number }> =>
      upgradeStatus(r, '/v1/server', { 'User-Agent': 'u', ...(xff === undefined ? {} : { 'X-Forwarded-For': xff }) });
    expect((await gateFail('10.0.0.1, 192.168.7.7')).status).toBe(400);
    expect((await gateFail('10.0.0.1')).status).toBe(429); // same left-most entry
    expect((await gateFail(' 10.0.0.2 ,10.0.0.1')).status).toBe(400); // trimmed, own bucket
    expect((await gateFail('192.168.7.7')).status).toBe(400); // a non-left-most entry earlier never counted
    expect((await gateFail()).status).toBe(400); // socket IP bucket, fresh
    expect((await gateFail()).status).toBe(429);
    expect((await gateFail(' , 10.0.0.9')).status).toBe(429); // empty left-most -> socket IP
    const remotes = logsOf(r, 'rate_limited').map((l) => l.remote);
    expect(remotes).toEqual(['"10.0.0.1"', '"127.0.0.1"', '"127.0.0.1"']);
    await expectCounters(r, {
      [upgradeCell('server', 'reject_headers')]: 4,
      [upgradeCell('server', 'reject_rate_limit')]: 3,
      [registerCell('ratelimit')]: 3,
    });
    // Everywhere else `remote` is the socket's host, not XFF.
    const p = client(r, '/v1/client', phoneHeaders('nobody', { 'X-Forwarded-For': '10.9.9.9' }));
    expect((await p.waitClose()).code).toBe(4404);
    expect(logsOf(r, 'phone_register_no_server')[0]!.remote).toBe('127.0.0.1');
  });

  it('without the flag X-Forwarded-For is ignored', async () => {
    const r = await boot({ rateLimitBurst: 1, rateLimitIntervalMs: 60_000 });
    const first = await upgradeStatus(r, '/v1/server', { 'User-Agent': 'u', 'X-Forwarded-For': '10.0.0.1' });
    expect(first.status).toBe(400);
    const second = await upgradeStatus(r, '/v1/client', { 'User-Agent': 'u', 'X-Forwarded-For': '10.0.0.2' });
    expect(second.status).toBe(429);
    expect(logsOf(r, 'rate_limited').map((l) => l.remote)).toEqual(['"127.0.0.1"']);
    await expectCounters(r, {
      [upgradeCell('server', 'reject_headers')]: 1,
      [upgradeCell('client', 'reject_rate_limit')]: 1,
      [registerCell('ratelimit')]: 1,
    });
  });

  it('unknown paths do not consume rate-limit tokens', async () => {
    const r = await boot({ rateLimitBurst: 1, rateLimitIntervalMs: 60_000 });
    for (let i = 0; i < 3; i++) expect((await upgradeStatus(r, '/v1/serverX', binaryHeaders('x'))).status).toBe(404);
    await binary(r, 'after-404s');
    await expectCounters(r, { [upgradeCell('server', 'accept')]: 1 });
  });
});

// ---------------------------------------------------------------------------------------------
// 3.8 connection cap
// ---------------------------------------------------------------------------------------------

describe('global connection cap (3.8)', () => {
  it('maxConnections 2: third upgrade is 503 "\\n" with conn_cap_reached; slots come back', async () => {
    const r = await boot({ maxConnections: 2 });
    const a = await binary(r, 'cap-a');
    await binary(r, 'cap-b');
    expect(r.relay.cap.used).toBe(2);

    const refused = await upgradeStatus(r, '/v1/client', phoneHeaders('cap-a'));
    expect(refused.status).toBe(503);
    expect(refused.body).toBe('\n');
    expectErrorHeaders(refused.headers);
    const plain = await httpGet(`${r.httpUrl}/v1/server`, { headers: binaryHeaders('cap-c') });
    expect(plain.status).toBe(503);
    expect(plain.body).toBe('\n');
    // Header-gate failures never reach the gate when the cap is full.
    expect((await upgradeStatus(r, '/v1/server', { 'User-Agent': 'u' })).status).toBe(503);

    const capLogs = logsOf(r, 'conn_cap_reached');
    expect(capLogs).toHaveLength(3);
    expect(capLogs[0]!.level).toBe('WARN');
    expect(logFields(capLogs[0]!)).toEqual({ path: '/v1/client', remote: '127.0.0.1' });
    expect(logFields(capLogs[1]!)).toEqual({ path: '/v1/server', remote: '127.0.0.1' });
    // 503 counts nothing.
    await expectCounters(r, { [upgradeCell('server', 'accept')]: 2 });
    // /healthz is not capped.
    expect((await httpGet(`${r.httpUrl}/healthz`)).status).toBe(200);

    // A client leaving gives its slot back.
    a.close();
    await waitFor(() => r.relay.cap.used === 1, 3_000, 'slot released after close');
    const p = await phone(r, 'cap-b');
    expect(p.closed).toBeUndefined();
    expect(r.relay.cap.used).toBe(2);
    p.close();
    await waitFor(() => r.relay.cap.used === 1, 3_000, 'slot released after phone close');

    // A 400 holds its slot only briefly.
    expect((await upgradeStatus(r, '/v1/client', { 'User-Agent': 'u' })).status).toBe(400);
    expect(r.relay.cap.used).toBe(1);
    // A stillborn 4404 connection holds one until it is closed, then gives it back.
    const ghost = client(r, '/v1/client', phoneHeaders('nobody'));
    expect((await ghost.waitClose()).code).toBe(4404);
    await waitFor(() => r.relay.cap.used === 1, 3_000, 'slot released after 4404');
    // Both slots usable again.
    await binary(r, 'cap-d');
    expect(r.relay.cap.used).toBe(2);
  });

  it('a rate-limited request never takes a slot (the limiter runs before the cap)', async () => {
    const r = await boot({ maxConnections: 1, rateLimitBurst: 2, rateLimitIntervalMs: 60_000 });
    const a = await binary(r, 'rl-cap'); // token 1, the only slot
    expect((await upgradeStatus(r, '/v1/client', phoneHeaders('rl-cap'))).status).toBe(503); // token 2
    const denied = await upgradeStatus(r, '/v1/client', phoneHeaders('rl-cap'));
    expect(denied.status).toBe(429); // not 503: the limiter answers first
    expect(r.relay.cap.used).toBe(1);
    a.close();
    await waitFor(() => r.relay.cap.used === 0, 3_000, 'slot released');
    expect((await upgradeStatus(r, '/v1/server', binaryHeaders('rl-cap2'))).status).toBe(429);
    expect(r.relay.cap.used).toBe(0);
    expect(logsOf(r, 'conn_cap_reached')).toHaveLength(1);
    expect(logsOf(r, 'rate_limited')).toHaveLength(2);
    await expectCounters(r, {
      [upgradeCell('server', 'accept')]: 1,
      [upgradeCell('client', 'reject_rate_limit')]: 1,
      [upgradeCell('server', 'reject_rate_limit')]: 1,
      [registerCell('ratelimit')]: 2,
    });
  });
});

// ---------------------------------------------------------------------------------------------
// 2.1 routing, 2.4 handshake rules
// ---------------------------------------------------------------------------------------------

describe('routing (2.1) and handshake (2.4)', () => {
  const badPaths = ['/v1/server/', '/v1/serverX', '/', '/v1', '/v1/client/', '/V1/SERVER', '/healthz/', '/metrics'];

  it('exact-path routing: unknown paths are 404 "404 page not found\\n" for GET and for upgrades', async () => {
    const r = await boot();
    for (const path of badPaths) {
      const g = await httpGet(`${r.httpUrl}${path}`);
      expect(g.status, `GET ${path}`).toBe(404);
      expect(g.body, `GET ${path}`).toBe('404 page not found\n');
      expectErrorHeaders(g.headers);
      const u = await upgradeStatus(r, path, binaryHeaders('route-id'));
      expect(u.status, `upgrade ${path}`).toBe(404);
      expect(u.body, `upgrade ${path}`).toBe('404 page not found\n');
      expectErrorHeaders(u.headers);
    }
    await expectCounters(r, {});
    expect(r.relay.registry.binaryFor('route-id')).toBeUndefined();
    expect(r.logs.filter((l) => l.msg !== 'starting')).toEqual([]);
  });

  it('a query string does not change the route', async () => {
    const r = await boot();
    const b = client(r, '/v1/server?foo=bar', binaryHeaders('q-id'));
    await b.open();
    await waitFor(() => r.relay.registry.binaryFor('q-id') !== undefined, 3_000, 'claim');
    await expectCounters(r, { [upgradeCell('server', 'accept')]: 1 });
  });

  it('/v1/* without an upgrade after passing the gates: 426 for any method (the Connection/Upgrade check comes before the method check, as in the reference library); nothing counted', async () => {
    const r = await boot();
    for (const [path, headers] of [
      ['/v1/server', binaryHeaders('plain-id')],
      ['/v1/client', phoneHeaders('plain-id')],
    ] as const) {
      const get = await httpGet(`${r.httpUrl}${path}`, { headers });
      expect(get.status, `GET ${path}`).toBe(426);
      expect(get.headers.upgrade).toBe('websocket');
      const post = await httpGet(`${r.httpUrl}${path}`, { method: 'POST', headers });
      expect(post.status, `POST ${path}`).toBe(426);
    }
    // Upgrade: websocket without Connection: Upgrade is not a handshake either -> 426.
    const noConn = await rawHttp(
      r.port,
      requestText('GET', '/v1/server', [
        ...pairs(binaryHeaders('plain-id')),
        ['Connection', 'keep-alive'],
        ['Upgrade', 'websocket'],
        ['Sec-WebSocket-Version', '13'],
        ['Sec-WebSocket-Key', WS_KEY],
      ]),
    );
    expect(noConn.status).toBe(426);
    await expectCounters(r, {});
    expect(r.relay.cap.used).toBe(0);
    // The gate still runs first: a plain GET missing a header is a counted 400.
    const missing = await httpGet(`${r.httpUrl}/v1/client`, { headers: { 'User-Agent': 'u' } });
    expect(missing.status).toBe(400);
    expect(missing.body).toBe('\n');
    expectErrorHeaders(missing.headers);
    await expectCounters(r, { [upgradeCell('client', 'reject_headers')]: 1 });
    expect(r.logs.filter((l) => l.msg !== 'starting')).toEqual([]);
  });

  const handshakeRows: [string, string, [string, string][], number][] = [
    ['missing Sec-WebSocket-Key', 'GET', WS_HANDSHAKE.filter(([k]) => k !== 'Sec-WebSocket-Key'), 400],
    ['missing Sec-WebSocket-Version', 'GET', WS_HANDSHAKE.filter(([k]) => k !== 'Sec-WebSocket-Version'), 400],
    [
      'Sec-WebSocket-Version: 12',
      'GET',
      WS_HANDSHAKE.map(([k, v]): [string, string] => (k === 'Sec-WebSocket-Version' ? [k, '12'] : [k, v])),
      400,
    ],
    [
      'Sec-WebSocket-Version: 8',
      'GET',
      WS_HANDSHAKE.map(([k, v]): [string, string] => (k === 'Sec-WebSocket-Version' ? [k, '8'] : [k, v])),
      400,
    ],
    ['POST upgrade', 'POST', [...WS_HANDSHAKE], 405],
    [
      'Upgrade: h2c (not websocket)',
      'GET',
      WS_HANDSHAKE.map(([k, v]): [string, string] => (k === 'Upgrade' ? [k, 'h2c'] : [k, v])),
      426,
    ],
  ];

  for (const [name, method, hs, status] of handshakeRows) {
    it(`bad WebSocket handshake (${name}) -> ${status}, no metric, no log, slot returned`, async () => {
      const r = await boot();
      const res = await rawHttp(r.port, requestText(method, '/v1/server', [...pairs(binaryHeaders('hs-id')), ...hs]));
      expect(res.status).toBe(status);
      await expectCounters(r, {});
      expect(r.relay.registry.binaryFor('hs-id')).toBeUndefined();
      expect(r.logs.filter((l) => l.msg !== 'starting')).toEqual([]);
      await waitFor(() => r.relay.cap.used === 0, 3_000, 'slot released');
    });
  }

  it('a bad handshake still consumes a rate-limit token', async () => {
    const r = await boot({ rateLimitBurst: 1, rateLimitIntervalMs: 60_000 });
    const res = await rawHttp(
      r.port,
      requestText('GET', '/v1/server', [
        ...pairs(binaryHeaders('hs-id')),
        ...WS_HANDSHAKE.filter(([k]) => k !== 'Sec-WebSocket-Key'),
      ]),
    );
    expect(res.status).toBe(400);
    expect((await upgradeStatus(r, '/v1/server', binaryHeaders('hs-id'))).status).toBe(429);
  });

  it("an Upgrade header listing websocket among other tokens is upgraded, as by the reference (not ws's own 400)", async () => {
    const r = await boot();
    for (const [id, upgrade] of [
      ['tok-1', 'websocket, foo'],
      ['tok-2', 'foo, WebSocket'],
    ] as const) {
      const res = await rawHttp(
        r.port,
        requestText('GET', '/v1/server', [
          ...pairs(binaryHeaders(id)),
          ...WS_HANDSHAKE.map(([k, v]): [string, string] => (k === 'Upgrade' ? [k, upgrade] : [k, v])),
        ]),
      );
      expect(res.statusLine).toMatch(/^HTTP\/1\.1 101 /);
      expect(one(res, 'sec-websocket-accept')).toBe(WS_ACCEPT);
    }
    await expectCounters(r, { [upgradeCell('server', 'accept')]: 2 });
  });

  it('no subprotocol is echoed and permessage-deflate is not negotiated', async () => {
    const r = await boot();
    const res = await rawHttp(
      r.port,
      requestText('GET', '/v1/server', [
        ...pairs(binaryHeaders('raw-id')),
        ...WS_HANDSHAKE,
        ['Sec-WebSocket-Protocol', 'pyrycode.v2, chat'],
        ['Sec-WebSocket-Extensions', 'permessage-deflate; client_max_window_bits'],
      ]),
    );
    expect(res.statusLine).toMatch(/^HTTP\/1\.1 101 /);
    expect(one(res, 'sec-websocket-accept')).toBe(WS_ACCEPT);
    expect(res.headers.has('sec-websocket-protocol')).toBe(false);
    expect(res.headers.has('sec-websocket-extensions')).toBe(false);
    await expectCounters(r, { [upgradeCell('server', 'accept')]: 1 });
  });

  it('messages up to 262144 bytes pass, 262145 closes 1009 (both endpoints)', async () => {
    const r = await boot();
    const b = await binary(r, 'big-id');
    const p = await phone(r, 'big-id');
    const connId = await phoneConnId(p, b);

    // Phone -> binary: a JSON string of exactly 262144 bytes is forwarded.
    const exact = `"${'a'.repeat(262_144 - 2)}"`;
    expect(Buffer.byteLength(exact)).toBe(262_144);
    p.send(exact);
    const env = JSON.parse(await b.message(2, 5_000)) as { conn_id: string; frame: string };
    expect(env.conn_id).toBe(connId);
    expect(env.frame.length).toBe(262_142);

    // Binary -> phone: an envelope of exactly 262144 bytes is routed.
    const prefix = `{"conn_id":"${connId}","frame":"`;
    const suffix = `"}`;
    const envelope = prefix + 'b'.repeat(262_144 - prefix.length - suffix.length) + suffix;
    expect(Buffer.byteLength(envelope)).toBe(262_144);
    b.send(envelope);
    const got = await p.message(1, 5_000);
    expect(got.length).toBe(262_144 - prefix.length - suffix.length + 2);

    // One byte more closes the sender with 1009.
    const p2 = await phone(r, 'big-id');
    p2.send(`"${'a'.repeat(262_145 - 2)}"`);
    const c1 = await p2.waitClose();
    expect(c1.code).toBe(1009);
    expect(c1.reason).not.toContain('big-id');
    expect(b.closed).toBeUndefined();

    b.send(envelope.slice(0, prefix.length) + 'c' + envelope.slice(prefix.length));
    const c2 = await b.waitClose();
    expect(c2.code).toBe(1009);
    expect(c2.reason).not.toContain('big-id');
  });
});

// ---------------------------------------------------------------------------------------------
// docs/decisions.md, "Maximum request header size: 64 KiB": above it, 431
// ---------------------------------------------------------------------------------------------

describe('header size limit (64 KiB)', () => {
  it("a 60 KiB header is accepted (above Node's 16 KiB default); over 64 KiB is 431", async () => {
    const r = await boot();
    const ok = await rawHttp(
      r.port,
      requestText('GET', '/healthz', [
        ['Connection', 'close'],
        ['X-Pad', 'a'.repeat(60 * 1024)],
      ]),
    );
    expect(ok.status).toBe(200);
    const big = await rawExchange(r.port, requestText('GET', '/healthz', [['X-Pad', 'a'.repeat(64 * 1024 + 10)]]));
    expect(big).toMatch(/^HTTP\/1\.1 431 /);
    const bigUpgrade = await rawExchange(
      r.port,
      requestText('GET', '/v1/server', [
        ...pairs(binaryHeaders('hdr-id')),
        ...WS_HANDSHAKE,
        ['X-Pad', 'a'.repeat(70 * 1024)],
      ]),
    );
    expect(bigUpgrade).toMatch(/^HTTP\/1\.1 431 /);
    // A 40 KiB binary version (no length validation of its own) is fine; the server-id has its own
    // 256-byte limit (test/http/server-id.test.ts).
    const b = client(r, '/v1/server', binaryHeaders('hdr-long', { 'X-Pyrycode-Version': 'L'.repeat(40 * 1024) }));
    await b.open();
    await waitFor(() => r.relay.registry.binaryFor('hdr-long') !== undefined, 3_000, 'claim with a long version');
    await expectCounters(r, { [upgradeCell('server', 'accept')]: 1 });
  });
});

// ---------------------------------------------------------------------------------------------
// 7.1 /healthz
// ---------------------------------------------------------------------------------------------

describe('/healthz (docs/operations.md and docs/decisions.md)', () => {
  function expectHealthHeaders(headers: Record<string, string | string[] | undefined>): void {
    expect(headers['content-type']).toBe('application/json; charset=utf-8');
    expect(headers['cache-control']).toBe('no-store');
  }

  function expectHealthBody(
    body: string,
    version: string,
    want: { b: number; p: number; bsb: number; psb: number; frames: number },
    maxUptime: number,
  ): void {
    expect(body.endsWith('\n')).toBe(false);
    const parsed = JSON.parse(body) as Record<string, unknown>;
    expect(Object.keys(parsed)).toEqual(HEALTHZ_KEYS);
    const uptime = parsed.uptime_seconds as number;
    expect(Number.isInteger(uptime)).toBe(true);
    expect(uptime).toBeGreaterThanOrEqual(0);
    expect(uptime).toBeLessThanOrEqual(maxUptime);
    expect(body).toBe(
      `{"status":"ok","version":${JSON.stringify(version)},"connected_binaries":${want.b},"connected_phones":${want.p},` +
        `"uptime_seconds":${uptime},"binaries_since_boot":${want.bsb},"phones_since_boot":${want.psb},` +
        `"frames_forwarded_since_boot":${want.frames}}`,
    );
  }

  it('any method -> 200 with exact headers and body; query string ignored', async () => {
    const t0 = Date.now();
    const r = await boot();
    const version = r.relay.version;
    expect(version).toMatch(/\S/);
    const maxUptime = (): number => Math.ceil((Date.now() - t0) / 1000);
    const zero = { b: 0, p: 0, bsb: 0, psb: 0, frames: 0 };
    for (const method of ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
      const res = await httpGet(`${r.httpUrl}/healthz`, { method });
      expect(res.status, method).toBe(200);
      expectHealthHeaders(res.headers);
      expectHealthBody(res.body, version, zero, maxUptime());
    }
    const head = await httpGet(`${r.httpUrl}/healthz`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expectHealthHeaders(head.headers);
    expect(head.body).toBe('');
    const q = await httpGet(`${r.httpUrl}/healthz?verbose=1&x=%20`);
    expect(q.status).toBe(200);
    expectHealthHeaders(q.headers);
    expectHealthBody(q.body, version, zero, maxUptime());
    // An upgrade request to /healthz is answered like any other request.
    const u = await upgradeStatus(r, '/healthz', binaryHeaders('h'));
    expect(u.status).toBe(200);
    expectHealthHeaders(u.headers);
    expectHealthBody(u.body, version, zero, maxUptime());
    await expectCounters(r, {});
  });

  it('numbers after some activity (gracing binary excluded, its phones included)', async () => {
    const t0 = Date.now();
    const r = await boot({ gracePeriodMs: 20_000 });
    const a = await binary(r, 'h-a');
    const p1 = await phone(r, 'h-a');
    await phone(r, 'h-a');
    const connId = await phoneConnId(p1, a); // phone -> binary: 1
    a.send(JSON.stringify({ conn_id: connId, frame: { hi: 1 } }));
    expect(await p1.message(1)).toBe('{"hi":1}'); // binary -> phone: 1
    const b = await binary(r, 'h-b');
    await phone(r, 'h-b');
    const rejected = client(r, '/v1/client', phoneHeaders('nobody'));
    expect((await rejected.waitClose()).code).toBe(4404);
    b.close();
    await waitFor(() => r.relay.registry.graceEntry('h-b') !== undefined, 3_000, 'h-b in grace');
    const want = { b: 1, p: 3, bsb: 2, psb: 3, frames: 2 };
    await waitFor(() => r.relay.metrics.framesBinaryToPhone === 1, 3_000, 'frame counted');
    const res = await httpGet(`${r.httpUrl}/healthz`);
    expect(res.status).toBe(200);
    expectHealthBody(res.body, r.relay.version, want, Math.ceil((Date.now() - t0) / 1000));
    expect(await r.metric('pyrycode_relay_connected_binaries')).toBe(1);
    expect(await r.metric('pyrycode_relay_connected_phones')).toBe(3);
  });

  it('is not rate limited even when the bucket is empty', async () => {
    const r = await boot({ rateLimitBurst: 1, rateLimitIntervalMs: 60_000 });
    expect((await upgradeStatus(r, '/v1/server', { 'User-Agent': 'u' })).status).toBe(400);
    expect((await upgradeStatus(r, '/v1/server', { 'User-Agent': 'u' })).status).toBe(429);
    for (let i = 0; i < 10; i++) {
      const res = await httpGet(`${r.httpUrl}/healthz`);
      expect(res.status).toBe(200);
    }
    expect(logsOf(r, 'rate_limited')).toHaveLength(1);
  });
});

// ---------------------------------------------------------------------------------------------
// Probe-oracle hygiene
// ---------------------------------------------------------------------------------------------

describe('close reasons never echo the server-id', () => {
  it('4404, 4409, 4429, reclaim 4404 and takeover 1011 carry fixed literals only', async () => {
    const id = 'sid-7f3a9c-secret';
    const r = await boot({ probeTimeoutMs: 300, maxPhonesPerServer: 1, gracePeriodMs: 10_000 });
    const seen: { code: number; reason: string }[] = [];

    const nobody = client(r, '/v1/client', phoneHeaders(id));
    seen.push(await nobody.waitClose());

    const a = client(r, '/v1/server', binaryHeaders(id), { autoPong: false });
    await a.open();
    await waitFor(() => r.relay.registry.binaryFor(id) !== undefined, 3_000, 'claim');
    const p = await phone(r, id);
    const capped = client(r, '/v1/client', phoneHeaders(id));
    seen.push(await capped.waitClose());
    const b = await binary(r, id); // takeover: a gets 1011, p gets 4404
    seen.push(await a.waitClose());
    seen.push(await p.waitClose());
    const c = client(r, '/v1/server', binaryHeaders(id)); // b is alive -> 4409
    seen.push(await c.waitClose());
    expect(b.closed).toBeUndefined();

    expect(seen).toEqual([
      { code: 4404, reason: 'no server with that id' },
      { code: 4429, reason: 'too many phones for server-id' },
      { code: 1011, reason: 'heartbeat timeout' },
      { code: 4404, reason: 'binary reclaimed server-id' },
      { code: 4409, reason: 'server-id already claimed' },
    ]);
    for (const s of seen) expect(s.reason).not.toContain(id);
  });
});

// ---------------------------------------------------------------------------------------------
// Repeated request headers: the first value counts, as the reference's Header.Get reads it
// ---------------------------------------------------------------------------------------------

describe('repeated request headers', () => {
  const repeated = (value: string[]): string => value as unknown as string; // Node writes one line per value

  it('a binary sending X-Pyrycode-Server twice claims the first value; a phone naming it is routed', async () => {
    const r = await boot();
    const b = client(r, '/v1/server', binaryHeaders('x', { 'X-Pyrycode-Server': repeated(['first-id', 'second-id']) }));
    await b.open();
    await waitFor(() => r.relay.registry.binaryFor('first-id') !== undefined, 3_000, 'claim of first-id');
    expect(r.relay.registry.binaryFor('second-id')).toBeUndefined();
    expect(r.relay.registry.binaryFor('first-id, second-id')).toBeUndefined();
    const p = client(r, '/v1/client', phoneHeaders('x', { 'X-Pyrycode-Server': repeated(['first-id', 'other-id']) }));
    await p.open();
    p.send('{"a":1}');
    const envelope = JSON.parse(await b.message(1)) as { conn_id: string; frame: unknown };
    expect(envelope.conn_id).toMatch(/^client-first-id-[0-9a-f]{8}$/);
    expect(envelope.frame).toEqual({ a: 1 });
  });

  it('a value with a comma in one line is kept whole (400 only when the first value is empty)', async () => {
    const r = await boot();
    const b = client(r, '/v1/server', binaryHeaders('a, b'));
    await b.open();
    await waitFor(() => r.relay.registry.binaryFor('a, b') !== undefined, 3_000, 'claim of "a, b"');
    // An empty first line is a missing header even when a later line has a value.
    const refused = await rawHttp(
      r.port,
      requestText('GET', '/v1/server', [
        ...WS_HANDSHAKE,
        ['X-Pyrycode-Server', ''],
        ['X-Pyrycode-Server', 'later-id'],
        ['X-Pyrycode-Version', '1.2.3'],
        ['User-Agent', 'pyry-test/1'],
      ]),
    );
    expect(refused.status).toBe(400);
  });

  it('with --trust-x-forwarded-for the first X-Forwarded-For line is the rate-limit key', async () => {
    const r = await boot({ trustXForwardedFor: true, rateLimitBurst: 1 });
    const plain = (xff: string[]): Promise<ParsedResponse> =>
      rawHttp(
        r.port,
        requestText('GET', '/v1/client', [
          ...xff.map((v): [string, string] => ['X-Forwarded-For', v]),
          ['X-Pyrycode-Server', 'srv'],
          ['X-Pyrycode-Token', 'tok'],
          ['User-Agent', 'phone-test/1'],
        ]),
      );
    // Passed every gate but is not an upgrade: 426. The second request shares the first line's key.
    expect((await plain(['198.51.100.1', '198.51.100.2'])).status).toBe(426);
    expect((await plain(['198.51.100.1', '198.51.100.3'])).status).toBe(429);
    expect((await plain(['198.51.100.2', '198.51.100.1'])).status).toBe(426);
  });
});
