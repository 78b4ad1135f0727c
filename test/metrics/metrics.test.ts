// The scrape contract: the exact families, HELP and TYPE lines and cells of the reference families
// (docs/metrics.md, "The series") from the first scrape, and the semantics that tie the families together.

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
} from '../helpers/relay.js';
import { waitFor } from '../helpers/wait.js';
import { VERSION } from '../../src/version.js';
import { testKey } from '../helpers/fake-fcm.js';

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

// This project's operator signals (docs/metrics.md), after the reference families. The reclaim
// histogram is there from boot with every bucket at 0 (telemetry/empty-histograms.ts; the test
// relay's grace window is 1 s).
const GOLDEN_SIGNALS = `# HELP pyrycode_relay_build_info Build information: always 1, labelled with the relay version and the Node.js version running it.
# TYPE pyrycode_relay_build_info gauge
pyrycode_relay_build_info{version="${VERSION}",node_version="${process.version}"} 1
# HELP pyrycode_relay_bytes_forwarded_total Bytes the relay wrote to the receiving socket, by direction: routing envelopes towards the binary (phone_to_binary), inner frames towards phones (binary_to_phone). Moves when a frame counts in pyrycode_relay_frames_forwarded_total.
# TYPE pyrycode_relay_bytes_forwarded_total counter
pyrycode_relay_bytes_forwarded_total{direction="binary_to_phone"} 0
pyrycode_relay_bytes_forwarded_total{direction="phone_to_binary"} 0
# HELP pyrycode_relay_bytes_received_total Bytes of the messages counted in pyrycode_relay_frames_received_total (whole routing envelopes for binary_to_phone), by direction. Moves when the message is read.
# TYPE pyrycode_relay_bytes_received_total counter
pyrycode_relay_bytes_received_total{direction="binary_to_phone"} 0
pyrycode_relay_bytes_received_total{direction="phone_to_binary"} 0
# HELP pyrycode_relay_connections_closed_total WebSocket connections that ended, by endpoint and reason: the code the peer closed with (normal_1000, going_away_1001, no_status_1005, other_code), abrupt when the socket ended without a close frame, or the relay's own reason. One increment per connection, when its socket is gone.
# TYPE pyrycode_relay_connections_closed_total counter
pyrycode_relay_connections_closed_total{endpoint="client",reason="abrupt"} 0
pyrycode_relay_connections_closed_total{endpoint="client",reason="at_cap_4429"} 0
pyrycode_relay_connections_closed_total{endpoint="client",reason="backlog_full"} 0
pyrycode_relay_connections_closed_total{endpoint="client",reason="directive"} 0
pyrycode_relay_connections_closed_total{endpoint="client",reason="evicted_4404"} 0
pyrycode_relay_connections_closed_total{endpoint="client",reason="forward_failed"} 0
pyrycode_relay_connections_closed_total{endpoint="client",reason="going_away_1001"} 0
pyrycode_relay_connections_closed_total{endpoint="client",reason="grace_expired"} 0
pyrycode_relay_connections_closed_total{endpoint="client",reason="heartbeat_timeout"} 0
pyrycode_relay_connections_closed_total{endpoint="client",reason="invalid_payload_1007"} 0
pyrycode_relay_connections_closed_total{endpoint="client",reason="malformed_frame"} 0
pyrycode_relay_connections_closed_total{endpoint="client",reason="no_binary"} 0
pyrycode_relay_connections_closed_total{endpoint="client",reason="no_server_4404"} 0
pyrycode_relay_connections_closed_total{endpoint="client",reason="no_status_1005"} 0
pyrycode_relay_connections_closed_total{endpoint="client",reason="normal_1000"} 0
pyrycode_relay_connections_closed_total{endpoint="client",reason="other_code"} 0
pyrycode_relay_connections_closed_total{endpoint="client",reason="ping_flood"} 0
pyrycode_relay_connections_closed_total{endpoint="client",reason="protocol_error_1002"} 0
pyrycode_relay_connections_closed_total{endpoint="client",reason="read_timeout_1008"} 0
pyrycode_relay_connections_closed_total{endpoint="client",reason="shutdown"} 0
pyrycode_relay_connections_closed_total{endpoint="client",reason="too_big_1009"} 0
pyrycode_relay_connections_closed_total{endpoint="client",reason="write_failed"} 0
pyrycode_relay_connections_closed_total{endpoint="server",reason="abrupt"} 0
pyrycode_relay_connections_closed_total{endpoint="server",reason="conflict_4409"} 0
pyrycode_relay_connections_closed_total{endpoint="server",reason="going_away_1001"} 0
pyrycode_relay_connections_closed_total{endpoint="server",reason="heartbeat_timeout"} 0
pyrycode_relay_connections_closed_total{endpoint="server",reason="invalid_payload_1007"} 0
pyrycode_relay_connections_closed_total{endpoint="server",reason="no_status_1005"} 0
pyrycode_relay_connections_closed_total{endpoint="server",reason="normal_1000"} 0
pyrycode_relay_connections_closed_total{endpoint="server",reason="other_code"} 0
pyrycode_relay_connections_closed_total{endpoint="server",reason="ping_flood"} 0
pyrycode_relay_connections_closed_total{endpoint="server",reason="probe_aborted"} 0
pyrycode_relay_connections_closed_total{endpoint="server",reason="protocol_error_1002"} 0
pyrycode_relay_connections_closed_total{endpoint="server",reason="read_timeout_1008"} 0
pyrycode_relay_connections_closed_total{endpoint="server",reason="shutdown"} 0
pyrycode_relay_connections_closed_total{endpoint="server",reason="taken_over"} 0
pyrycode_relay_connections_closed_total{endpoint="server",reason="too_big_1009"} 0
pyrycode_relay_connections_closed_total{endpoint="server",reason="write_failed"} 0
# HELP pyrycode_relay_frames_dropped_total Frames the relay read but did not forward, by direction and reason. Moves when the frame is given up; received = forwarded + dropped for each direction once traffic is idle.
# TYPE pyrycode_relay_frames_dropped_total counter
pyrycode_relay_frames_dropped_total{direction="binary_to_phone",reason="backlog_full"} 0
pyrycode_relay_frames_dropped_total{direction="binary_to_phone",reason="closing"} 0
pyrycode_relay_frames_dropped_total{direction="binary_to_phone",reason="malformed_envelope"} 0
pyrycode_relay_frames_dropped_total{direction="binary_to_phone",reason="phone_gone"} 0
pyrycode_relay_frames_dropped_total{direction="binary_to_phone",reason="shutdown"} 0
pyrycode_relay_frames_dropped_total{direction="binary_to_phone",reason="unknown_conn_id"} 0
pyrycode_relay_frames_dropped_total{direction="binary_to_phone",reason="write_failed"} 0
pyrycode_relay_frames_dropped_total{direction="phone_to_binary",reason="closing"} 0
pyrycode_relay_frames_dropped_total{direction="phone_to_binary",reason="malformed_frame"} 0
pyrycode_relay_frames_dropped_total{direction="phone_to_binary",reason="no_binary"} 0
pyrycode_relay_frames_dropped_total{direction="phone_to_binary",reason="write_failed"} 0
# HELP pyrycode_relay_frames_received_total Frames the relay read, by direction: every message from a phone, and every message from a binary except push-wake requests and close directives without a frame. Moves when the message is read.
# TYPE pyrycode_relay_frames_received_total counter
pyrycode_relay_frames_received_total{direction="binary_to_phone"} 0
pyrycode_relay_frames_received_total{direction="phone_to_binary"} 0
# HELP pyrycode_relay_grace_reclaim_seconds Seconds between a binary disconnecting and its successor reclaiming the server-id within the grace window. One observation per reclaim; every bucket is 0 until the first reclaim.
# TYPE pyrycode_relay_grace_reclaim_seconds histogram
pyrycode_relay_grace_reclaim_seconds_count 0
pyrycode_relay_grace_reclaim_seconds_sum 0
pyrycode_relay_grace_reclaim_seconds_bucket{le="0.01"} 0
pyrycode_relay_grace_reclaim_seconds_bucket{le="0.025"} 0
pyrycode_relay_grace_reclaim_seconds_bucket{le="0.05"} 0
pyrycode_relay_grace_reclaim_seconds_bucket{le="0.1"} 0
pyrycode_relay_grace_reclaim_seconds_bucket{le="0.25"} 0
pyrycode_relay_grace_reclaim_seconds_bucket{le="0.5"} 0
pyrycode_relay_grace_reclaim_seconds_bucket{le="0.75"} 0
pyrycode_relay_grace_reclaim_seconds_bucket{le="1"} 0
pyrycode_relay_grace_reclaim_seconds_bucket{le="+Inf"} 0
# HELP pyrycode_relay_grace_reclaims_total Binaries that claimed a server-id while it was in its grace window (the previous binary came back, or its successor took over its phones). Moves with the claim.
# TYPE pyrycode_relay_grace_reclaims_total counter
pyrycode_relay_grace_reclaims_total 0
# HELP pyrycode_relay_http_errors_total Requests on the public listener answered with an HTTP error before any endpoint ran: malformed requests (400), header timeout (408), headers over 64 KiB (431), unknown paths (404). One increment per answered request.
# TYPE pyrycode_relay_http_errors_total counter
pyrycode_relay_http_errors_total{reason="bad_request_400"} 0
pyrycode_relay_http_errors_total{reason="header_timeout_408"} 0
pyrycode_relay_http_errors_total{reason="header_too_large_431"} 0
pyrycode_relay_http_errors_total{reason="not_found_404"} 0
# HELP pyrycode_relay_log_lines_dropped_total Log lines dropped because stderr backed up (more than 1 MiB of unwritten output: a slow or stuck reader of the pipe). Moves when the line is dropped.
# TYPE pyrycode_relay_log_lines_dropped_total counter
pyrycode_relay_log_lines_dropped_total 0
# HELP pyrycode_relay_log_lines_suppressed_total Log lines not written because their cause repeated (the first lines per connection or client address are written, then one log_suppressed summary line), by event. Moves when the line is suppressed.
# TYPE pyrycode_relay_log_lines_suppressed_total counter
pyrycode_relay_log_lines_suppressed_total{event="binary_forwarder_phone_enqueue_failed"} 0
pyrycode_relay_log_lines_suppressed_total{event="binary_forwarder_push_wake_dropped"} 0
pyrycode_relay_log_lines_suppressed_total{event="binary_forwarder_unknown_conn_id"} 0
pyrycode_relay_log_lines_suppressed_total{event="binary_forwarder_unmarshal_err"} 0
pyrycode_relay_log_lines_suppressed_total{event="conn_cap_reached"} 0
pyrycode_relay_log_lines_suppressed_total{event="rate_limited"} 0
# HELP pyrycode_relay_phones_parked Phones registered under a server-id whose binary is in its grace window (connected, waiting for the binary to come back). Computed at collection.
# TYPE pyrycode_relay_phones_parked gauge
pyrycode_relay_phones_parked 0
# HELP pyrycode_relay_rate_limit_table_full_total Upgrade requests refused with 429 because the rate limiter's bucket table was full of buckets in use, so the request's client address could not get a bucket. Each also counts in pyrycode_relay_ws_upgrade_attempts_total{outcome=reject_rate_limit}.
# TYPE pyrycode_relay_rate_limit_table_full_total counter
pyrycode_relay_rate_limit_table_full_total 0
# HELP pyrycode_relay_ready Whether /readyz answers 200: 1 while serving, 0 from the moment a drain starts, so load balancers stop sending new connections before peers are closed.
# TYPE pyrycode_relay_ready gauge
pyrycode_relay_ready 1
# HELP pyrycode_relay_upgrade_rejections_total Requests on /v1/server and /v1/client refused without a WebSocket for a reason pyrycode_relay_ws_upgrade_attempts_total does not count, by endpoint and reason: connection cap or drain (503), or a broken WebSocket handshake (400/405/426). One increment per refused request.
# TYPE pyrycode_relay_upgrade_rejections_total counter
pyrycode_relay_upgrade_rejections_total{endpoint="client",reason="bad_key_400"} 0
pyrycode_relay_upgrade_rejections_total{endpoint="client",reason="bad_method_405"} 0
pyrycode_relay_upgrade_rejections_total{endpoint="client",reason="bad_version_400"} 0
pyrycode_relay_upgrade_rejections_total{endpoint="client",reason="conn_cap_503"} 0
pyrycode_relay_upgrade_rejections_total{endpoint="client",reason="draining_503"} 0
pyrycode_relay_upgrade_rejections_total{endpoint="client",reason="not_websocket_426"} 0
pyrycode_relay_upgrade_rejections_total{endpoint="server",reason="bad_key_400"} 0
pyrycode_relay_upgrade_rejections_total{endpoint="server",reason="bad_method_405"} 0
pyrycode_relay_upgrade_rejections_total{endpoint="server",reason="bad_version_400"} 0
pyrycode_relay_upgrade_rejections_total{endpoint="server",reason="conn_cap_503"} 0
pyrycode_relay_upgrade_rejections_total{endpoint="server",reason="draining_503"} 0
pyrycode_relay_upgrade_rejections_total{endpoint="server",reason="not_websocket_426"} 0
`;

// With push on (PYRYCODE_RELAY_FCM_CREDENTIALS set), the push family sits in the reference's sorted
// order between grace_expiries_total and register_failures_total, all five cells at 0.
const GOLDEN_PUSH_FAMILY = `# HELP pyrycode_relay_push_wakes_total Push wakes by outcome. dropped counts rate-limit and in-flight-cap refusals; every admitted wake counts once as sent, unregistered, send_failed or token_fetch_failed when its send returns.
# TYPE pyrycode_relay_push_wakes_total counter
pyrycode_relay_push_wakes_total{outcome="dropped"} 0
pyrycode_relay_push_wakes_total{outcome="send_failed"} 0
pyrycode_relay_push_wakes_total{outcome="sent"} 0
pyrycode_relay_push_wakes_total{outcome="token_fetch_failed"} 0
pyrycode_relay_push_wakes_total{outcome="unregistered"} 0
`;
const REGISTER_FAILURES_HELP = '# HELP pyrycode_relay_register_failures_total ';

// With --https-proxy-protocol, the refusal family sits in name order before rate_limit_table_full.
const GOLDEN_PROXY_FAMILY = `# HELP pyrycode_relay_proxy_protocol_refusals_total Connections the PROXY protocol v2 listener (--https-proxy-protocol) closed without a byte written, by reason: a header that is not v2 (bad_signature, bad_version), a command other than PROXY (local_command, bad_command), a family other than TCP4/TCP6, a malformed or oversized header, no complete header within 5 s (timeout), or the peer leaving first (closed). One increment per refused connection.
# TYPE pyrycode_relay_proxy_protocol_refusals_total counter
pyrycode_relay_proxy_protocol_refusals_total{reason="bad_command"} 0
pyrycode_relay_proxy_protocol_refusals_total{reason="bad_signature"} 0
pyrycode_relay_proxy_protocol_refusals_total{reason="bad_version"} 0
pyrycode_relay_proxy_protocol_refusals_total{reason="closed"} 0
pyrycode_relay_proxy_protocol_refusals_total{reason="header_too_large"} 0
pyrycode_relay_proxy_protocol_refusals_total{reason="local_command"} 0
pyrycode_relay_proxy_protocol_refusals_total{reason="no_peer_override"} 0
pyrycode_relay_proxy_protocol_refusals_total{reason="short_address_block"} 0
pyrycode_relay_proxy_protocol_refusals_total{reason="timeout"} 0
pyrycode_relay_proxy_protocol_refusals_total{reason="unsupported_family"} 0
`;
const RATE_LIMIT_TABLE_FULL_HELP = '# HELP pyrycode_relay_rate_limit_table_full_total ';

// TLS modes: the certificate-expiry gauge sits in name order between ready and upgrade_rejections.
const TLS_CERT_EXPIRY_HELP =
  '# HELP pyrycode_relay_tls_cert_expiry_timestamp_seconds When the TLS certificate the relay serves expires, in Unix seconds (static TLS and autocert only); 0 while autocert has no certificate yet. Read at collection.\n# TYPE pyrycode_relay_tls_cert_expiry_timestamp_seconds gauge\n';
const UPGRADE_REJECTIONS_HELP = '# HELP pyrycode_relay_upgrade_rejections_total ';

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
    // Byte-for-byte: the reference families first, in the reference's sorted order, then this
    // project's signals; no target_info, no scope labels.
    expect(res.body.slice(0, GOLDEN_BOOT_SCRAPE.length)).toBe(GOLDEN_BOOT_SCRAPE);
    expect(res.body).toBe(GOLDEN_BOOT_SCRAPE + GOLDEN_SIGNALS);
    const parsed = parseExposition(res.body);
    expect(parsed).toEqual(parseExposition(GOLDEN_BOOT_SCRAPE + GOLDEN_SIGNALS));
    expect(res.body).not.toMatch(/target_info|otel_scope/);
    // Push off (no credentials): the push family does not exist.
    expect(res.body).not.toContain('push_wakes');
  });

  it('with push on, the push family is served in sorted order with its five cells at 0', async () => {
    const key = testKey('http://127.0.0.1:9/token');
    relay = await startRelay({
      push: { credentials: key.credentials, endpoint: 'http://127.0.0.1:9', tokenUrl: 'http://127.0.0.1:9/token' },
    });
    const res = await httpGet(relay.metricsUrl);
    expect(res.status).toBe(200);
    const at = GOLDEN_BOOT_SCRAPE.indexOf(REGISTER_FAILURES_HELP);
    expect(at).toBeGreaterThan(0);
    const golden = GOLDEN_BOOT_SCRAPE.slice(0, at) + GOLDEN_PUSH_FAMILY + GOLDEN_BOOT_SCRAPE.slice(at);
    expect(res.body).toBe(golden + GOLDEN_SIGNALS);
    expect(parseExposition(res.body)).toEqual(parseExposition(golden + GOLDEN_SIGNALS));
    await relay.relay.push.close();
  });
});

describe('golden scrape: TLS and PROXY protocol families', () => {
  it('with --https-proxy-protocol, the refusal family is served in name order, every reason at 0', async () => {
    relay = await startRelay({ proxyProtocol: true });
    const res = await httpGet(relay.metricsUrl);
    const at = GOLDEN_SIGNALS.indexOf(RATE_LIMIT_TABLE_FULL_HELP);
    expect(at).toBeGreaterThan(0);
    expect(res.body).toBe(
      GOLDEN_BOOT_SCRAPE + GOLDEN_SIGNALS.slice(0, at) + GOLDEN_PROXY_FAMILY + GOLDEN_SIGNALS.slice(at),
    );
  });

  it('in TLS modes, tls_cert_expiry_timestamp_seconds reads the served certificate (0 while there is none)', async () => {
    let expiryMs: number | null = null;
    relay = await startRelay({ tlsCertExpiryMs: () => expiryMs });
    const at = GOLDEN_SIGNALS.indexOf(UPGRADE_REJECTIONS_HELP);
    const golden = (value: number): string =>
      GOLDEN_BOOT_SCRAPE +
      GOLDEN_SIGNALS.slice(0, at) +
      TLS_CERT_EXPIRY_HELP +
      `pyrycode_relay_tls_cert_expiry_timestamp_seconds ${value}\n` +
      GOLDEN_SIGNALS.slice(at);
    expect((await httpGet(relay.metricsUrl)).body).toBe(golden(0));
    expiryMs = Date.UTC(2027, 2, 1, 12, 0, 0, 999);
    expect((await httpGet(relay.metricsUrl)).body).toBe(golden(Date.UTC(2027, 2, 1, 12, 0, 0) / 1000));
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
    expect(
      (await upgradeStatus(relay, '/v1/client', { 'X-Pyrycode-Server': 'lock-a', 'User-Agent': 'x' })).status,
    ).toBe(400);
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
    for (let round = 0; round < 5; round++)
      await Promise.all(Array.from({ length: 8 }, (_, i) => cycle(round * 8 + i)));
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
