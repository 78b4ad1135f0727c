// The scrape contract: the exact families, HELP and TYPE lines and cells of relay-behaviour.md
// section 8.2 from the first scrape, and the semantics that tie the families together.

import { afterEach, describe, expect, it } from 'vitest';
import {
  connectBinary,
  connectPhone,
  httpGet,
  phoneConnId,
  sampleValue,
  startRelay,
  TestClient,
  phoneHeaders,
  upgradeStatus,
  binaryHeaders,
  type TestRelay,
} from './helpers/relay.js';
import { waitFor } from './helpers/wait.js';

// Written out from the spec's table (not from the code) so a drift in either is caught.
const GOLDEN_BOOT_SCRAPE = `# HELP pyrycode_relay_connected_binaries Number of pyrycode binary connections currently held by the relay registry.
# TYPE pyrycode_relay_connected_binaries gauge
pyrycode_relay_connected_binaries 0
# HELP pyrycode_relay_connected_phones Number of mobile client connections currently held by the relay registry, summed across all server-ids.
# TYPE pyrycode_relay_connected_phones gauge
pyrycode_relay_connected_phones 0
# HELP pyrycode_relay_frames_forwarded_total Number of frames forwarded by the relay, labelled by direction. Increments once per successful sink Send; per-frame error and skip paths do not increment.
# TYPE pyrycode_relay_frames_forwarded_total counter
pyrycode_relay_frames_forwarded_total{direction="binary_to_phone"} 0
pyrycode_relay_frames_forwarded_total{direction="phone_to_binary"} 0
# HELP pyrycode_relay_grace_expiries_total Number of grace-window timers that actually evicted a server-id slot. Stale fires (cancel-and-replace races) do not increment.
# TYPE pyrycode_relay_grace_expiries_total counter
pyrycode_relay_grace_expiries_total 0
# HELP pyrycode_relay_register_failures_total Registry-side registration failures by kind. Co-incremented with the matching pyrycode_relay_ws_upgrade_attempts_total{outcome=reject_*} series; their sum on kind equals the sum on the matching outcome value.
# TYPE pyrycode_relay_register_failures_total counter
pyrycode_relay_register_failures_total{kind="no_server"} 0
pyrycode_relay_register_failures_total{kind="phones_at_cap"} 0
pyrycode_relay_register_failures_total{kind="ratelimit"} 0
pyrycode_relay_register_failures_total{kind="server_in_use"} 0
# HELP pyrycode_relay_ws_upgrade_attempts_total WebSocket upgrade attempts by endpoint and outcome. One increment per terminal decision; a single request never increments more than once.
# TYPE pyrycode_relay_ws_upgrade_attempts_total counter
pyrycode_relay_ws_upgrade_attempts_total{endpoint="client",outcome="accept"} 0
pyrycode_relay_ws_upgrade_attempts_total{endpoint="client",outcome="reject_404"} 0
pyrycode_relay_ws_upgrade_attempts_total{endpoint="client",outcome="reject_409"} 0
pyrycode_relay_ws_upgrade_attempts_total{endpoint="client",outcome="reject_429"} 0
pyrycode_relay_ws_upgrade_attempts_total{endpoint="client",outcome="reject_headers"} 0
pyrycode_relay_ws_upgrade_attempts_total{endpoint="client",outcome="reject_rate_limit"} 0
pyrycode_relay_ws_upgrade_attempts_total{endpoint="server",outcome="accept"} 0
pyrycode_relay_ws_upgrade_attempts_total{endpoint="server",outcome="reject_404"} 0
pyrycode_relay_ws_upgrade_attempts_total{endpoint="server",outcome="reject_409"} 0
pyrycode_relay_ws_upgrade_attempts_total{endpoint="server",outcome="reject_429"} 0
pyrycode_relay_ws_upgrade_attempts_total{endpoint="server",outcome="reject_headers"} 0
pyrycode_relay_ws_upgrade_attempts_total{endpoint="server",outcome="reject_rate_limit"} 0
`;

interface Family {
  help: string;
  type: string;
  samples: Map<string, number>;
}

/** Parses the text exposition into families; throws on anything malformed. */
function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const family = (name: string): Family => {
    let f = families.get(name);
    if (f === undefined) {
      f = { help: '', type: '', samples: new Map() };
      families.set(name, f);
    }
    return f;
  };
  expect(text.endsWith('\n')).toBe(true);
  for (const line of text.slice(0, -1).split('\n')) {
    let m = /^# HELP (\S+) (.*)$/.exec(line);
    if (m) {
      family(m[1]!).help = m[2]!;
      continue;
    }
    m = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (m) {
      family(m[1]!).type = m[2]!;
      continue;
    }
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`malformed exposition line: ${line}`);
    family(m[1]!).samples.set(m[1]! + (m[2] ?? ''), Number(m[3]));
  }
  return families;
}

let relay: TestRelay;
afterEach(async () => relay?.close());

describe('golden scrape', () => {
  it('serves exactly the prescribed families, HELP, TYPE and zero cells right after boot', async () => {
    relay = await startRelay();
    const res = await httpGet(relay.metricsUrl);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    // Byte-for-byte: same order as the reference's sorted output, no target_info, no scope labels.
    expect(res.body).toBe(GOLDEN_BOOT_SCRAPE);
    const parsed = parseExposition(res.body);
    expect(parsed).toEqual(parseExposition(GOLDEN_BOOT_SCRAPE));
    expect(res.body).not.toMatch(/target_info|otel_scope/);
  });
});

describe('counter semantics', () => {
  it('keeps register_failures and the matching upgrade outcomes in lockstep after a mixed workload', async () => {
    relay = await startRelay({ maxPhonesPerServer: 2, rateLimitBurst: 40, probeTimeoutMs: 300 });
    const binary = await connectBinary(relay, 'lock-a');
    // 4409: a second, live claim.
    const challenger = new TestClient(`${relay.wsUrl}/v1/server`, binaryHeaders('lock-a'));
    expect(await challenger.waitClose()).toEqual({ code: 4409, reason: 'server-id already claimed' });
    // 4404 twice.
    for (let i = 0; i < 2; i++) {
      const stray = new TestClient(`${relay.wsUrl}/v1/client`, phoneHeaders('no-such-id'));
      expect(await stray.waitClose()).toEqual({ code: 4404, reason: 'no server with that id' });
    }
    // Two accepted phones, then 4429 three times.
    await connectPhone(relay, 'lock-a');
    await connectPhone(relay, 'lock-a');
    for (let i = 0; i < 3; i++) {
      const extra = new TestClient(`${relay.wsUrl}/v1/client`, phoneHeaders('lock-a'));
      expect(await extra.waitClose()).toEqual({ code: 4429, reason: 'too many phones for server-id' });
    }
    // Header gate (no register failure).
    expect((await upgradeStatus(relay, '/v1/client', { 'X-Pyrycode-Server': 'lock-a', 'User-Agent': 'x' })).status).toBe(
      400,
    );
    // Rate limit: burn the rest of the bucket (40 tokens) from this IP.
    let limited = 0;
    for (let i = 0; i < 40 && limited < 2; i++) {
      const r = await upgradeStatus(relay, '/v1/client', { 'User-Agent': 'x' });
      if (r.status === 429) limited++;
    }
    expect(limited).toBe(2);

    const text = await relay.scrape();
    const v = (s: string): number => sampleValue(text, s);
    const outcome = (e: string, o: string): number =>
      v(`pyrycode_relay_ws_upgrade_attempts_total{endpoint="${e}",outcome="${o}"}`);
    const kind = (k: string): number => v(`pyrycode_relay_register_failures_total{kind="${k}"}`);
    expect(kind('server_in_use')).toBe(1);
    expect(kind('no_server')).toBe(2);
    expect(kind('phones_at_cap')).toBe(3);
    expect(kind('ratelimit')).toBe(2);
    expect(kind('server_in_use')).toBe(outcome('server', 'reject_409') + outcome('client', 'reject_409'));
    expect(kind('no_server')).toBe(outcome('server', 'reject_404') + outcome('client', 'reject_404'));
    expect(kind('phones_at_cap')).toBe(outcome('server', 'reject_429') + outcome('client', 'reject_429'));
    expect(kind('ratelimit')).toBe(outcome('server', 'reject_rate_limit') + outcome('client', 'reject_rate_limit'));
    // The structurally unreachable cells never move.
    expect(outcome('server', 'reject_404')).toBe(0);
    expect(outcome('server', 'reject_429')).toBe(0);
    expect(outcome('client', 'reject_409')).toBe(0);
    expect(outcome('server', 'accept')).toBe(1);
    expect(outcome('client', 'accept')).toBe(2);
    binary.close();
  });

  it('a stale grace fire moves neither the counter nor the gauges', async () => {
    relay = await startRelay({ gracePeriodMs: 400 });
    const first = await connectBinary(relay, 'stale-1');
    const phone = await connectPhone(relay, 'stale-1');
    first.close();
    const registry = relay.relay.registry;
    const oldEntry = await waitFor(() => registry.graceEntry('stale-1'), 3_000, 'grace to be armed');
    const second = await connectBinary(relay, 'stale-1');
    expect(await phone.waitClose()).toEqual({ code: 4404, reason: 'binary reclaimed server-id' });
    const survivor = await connectPhone(relay, 'stale-1');
    // Replay the old timer's callback after the reclaim, as a cancel race would.
    expect(registry.expire('stale-1', oldEntry)).toBe(false);
    // And let the original window pass: nothing may fire.
    await new Promise((r) => setTimeout(r, 600));
    expect(await relay.metric('pyrycode_relay_grace_expiries_total')).toBe(0);
    expect(await relay.metric('pyrycode_relay_connected_binaries')).toBe(1);
    expect(await relay.metric('pyrycode_relay_connected_phones')).toBe(1);
    expect(survivor.closed).toBeUndefined();
    second.close();
  });

  it('counts a real grace expiry once, after the phones were closed', async () => {
    relay = await startRelay({ gracePeriodMs: 200 });
    const binary = await connectBinary(relay, 'exp-1');
    const phones = [await connectPhone(relay, 'exp-1'), await connectPhone(relay, 'exp-1')];
    binary.close();
    for (const phone of phones) expect(await phone.waitClose()).toEqual({ code: 1000, reason: '' });
    await waitFor(async () => (await relay.metric('pyrycode_relay_grace_expiries_total')) === 1, 3_000, 'expiry count');
    expect(await relay.metric('pyrycode_relay_connected_phones')).toBe(0);
    expect(await relay.metric('pyrycode_relay_connected_binaries')).toBe(0);
  });

  it('keeps the gauges exact while connections churn concurrently under a scraper', async () => {
    relay = await startRelay({ gracePeriodMs: 50, maxPhonesPerServer: 16 });
    let scrapes = 0;
    let scraping = true;
    const scraper = (async () => {
      while (scraping) {
        const text = await relay.scrape();
        // Every scrape is a consistent snapshot: never negative, never above what exists.
        expect(sampleValue(text, 'pyrycode_relay_connected_phones')).toBeGreaterThanOrEqual(0);
        expect(sampleValue(text, 'pyrycode_relay_connected_binaries')).toBeGreaterThanOrEqual(0);
        scrapes++;
        await new Promise((r) => setImmediate(r));
      }
    })();
    const cycle = async (n: number): Promise<void> => {
      const id = `churn-${n % 4}`;
      const binary = new TestClient(`${relay.wsUrl}/v1/server`, binaryHeaders(id));
      await binary.open().catch(() => {});
      const phones = Array.from({ length: 3 }, () => new TestClient(`${relay.wsUrl}/v1/client`, phoneHeaders(id)));
      await Promise.all(phones.map((p) => p.open().catch(() => {})));
      for (const p of phones) p.close();
      binary.close();
      await Promise.all([binary.waitClose(), ...phones.map((p) => p.waitClose())]);
    };
    for (let round = 0; round < 5; round++) await Promise.all(Array.from({ length: 8 }, (_, i) => cycle(round * 8 + i)));
    // Everyone left: after the grace windows the gauges must read exactly 0, like the registry.
    await waitFor(
      async () => {
        const text = await relay.scrape();
        return (
          sampleValue(text, 'pyrycode_relay_connected_binaries') === 0 &&
          sampleValue(text, 'pyrycode_relay_connected_phones') === 0
        );
      },
      5_000,
      'gauges to return to 0',
    );
    expect(relay.relay.counts()).toEqual({ binaries: 0, phones: 0 });
    scraping = false;
    await scraper;
    expect(scrapes).toBeGreaterThan(5);
  });

  it('frames_forwarded counts successful sends only and matches /healthz', async () => {
    relay = await startRelay();
    const binary = await connectBinary(relay, 'ff-1');
    const phone = await connectPhone(relay, 'ff-1');
    const connId = await phoneConnId(phone, binary); // 1 phone->binary
    for (let i = 0; i < 5; i++) binary.send(`{"conn_id":"${connId}","frame":${i}}`);
    binary.send(`{"conn_id":"client-ff-1-00000000","frame":1}`); // unknown conn_id: not counted
    binary.send('not json'); // malformed: not counted
    await phone.message(5);
    await waitFor(
      async () => (await relay.metric('pyrycode_relay_frames_forwarded_total{direction="binary_to_phone"}')) === 5,
      3_000,
      'binary_to_phone = 5',
    );
    expect(await relay.metric('pyrycode_relay_frames_forwarded_total{direction="phone_to_binary"}')).toBe(1);
    const health = JSON.parse((await httpGet(`${relay.httpUrl}/healthz`)).body) as Record<string, number>;
    expect(health.frames_forwarded_since_boot).toBe(6);
    expect(health.binaries_since_boot).toBe(1);
    expect(health.phones_since_boot).toBe(1);
  });
});
