// Every counter the relay keeps, declared in one place, each with the exact moment it moves.
//
// Two kinds of state live here:
// - Plain integer tallies owned by the core (hot path and live counts). OTel observable
//   instruments read them at collection time, and /healthz reads the same numbers: one source of
//   truth, ~2 ns per increment, independent of how many readers are attached.
// - Labelled control-plane counts (a few per connection at most): plain integer cells too, read
//   by observable counters with frozen attribute objects built once (LabelledCounter). Paired
//   series move together through composite event methods, so `register_failures_total` and the
//   matching `ws_upgrade_attempts_total` cells can never disagree. Rare unlabelled events (grace
//   expiries and reclaims, a full rate-limit table) stay synchronous OTel Counters.
//
// Label values are constants. Nothing taken from a header, an id or a payload becomes a label.
// Instruments are created in sorted name order and cells pre-bound at 0 in sorted label order, so
// the scrape has the same stable shape as the reference relay from the first second.

import type { Attributes, Counter, Histogram, Meter, ObservableResult } from '@opentelemetry/api';
import {
  CLOSE_ABNORMAL,
  CLOSE_GOING_AWAY,
  CLOSE_INVALID_PAYLOAD,
  CLOSE_MESSAGE_TOO_BIG,
  CLOSE_NO_STATUS,
  CLOSE_NORMAL,
  CLOSE_PROTOCOL_ERROR,
  READ_TIMEOUT_CODE,
} from '../protocol/close-codes.js';

/** Exact HELP texts of the reference families (docs/metrics.md, "The series"; part of the operator contract). */
export const HELP = {
  connectedBinaries: 'Number of pyrycode binary connections currently held by the relay registry.',
  connectedPhones:
    'Number of mobile client connections currently held by the relay registry, summed across all server-ids.',
  framesForwarded:
    'Number of frames forwarded by the relay, labelled by direction. Increments once per successful sink Send; per-frame error and skip paths do not increment.',
  graceExpiries:
    'Number of grace-window timers that actually evicted a server-id slot. Stale fires (cancel-and-replace races) do not increment.',
  pushWakes:
    'Push wakes by outcome. dropped counts rate-limit and in-flight-cap refusals; every admitted wake counts once as sent, unregistered, send_failed or token_fetch_failed when its send returns.',
  registerFailures:
    'Registry-side registration failures by kind. Co-incremented with the matching pyrycode_relay_ws_upgrade_attempts_total{outcome=reject_*} series; their sum on kind equals the sum on the matching outcome value.',
  upgradeAttempts:
    'WebSocket upgrade attempts by endpoint and outcome. One increment per terminal decision; a single request never increments more than once.',
} as const;

// Each label set is written once, as a sorted `as const` array (the order its cells are created
// in, and so the scrape's order); its type is derived from the array.

const ENDPOINTS = ['client', 'server'] as const;
export type Endpoint = (typeof ENDPOINTS)[number];
const OUTCOMES = ['accept', 'reject_404', 'reject_409', 'reject_429', 'reject_headers', 'reject_rate_limit'] as const;
type Outcome = (typeof OUTCOMES)[number];
const FAILURE_KINDS = ['no_server', 'phones_at_cap', 'ratelimit', 'server_in_use'] as const;
type FailureKind = (typeof FAILURE_KINDS)[number];
const PUSH_OUTCOMES = ['dropped', 'send_failed', 'sent', 'token_fetch_failed', 'unregistered'] as const;
export type PushOutcome = (typeof PUSH_OUTCOMES)[number];

const DIRECTION_P2B: Attributes = Object.freeze({ direction: 'phone_to_binary' });
const DIRECTION_B2P: Attributes = Object.freeze({ direction: 'binary_to_phone' });

/** Live state the gauges read at collection time. */
export interface CountsSource {
  /** Live counts the registry computes on demand (docs/operations.md, "Health and readiness checks"). */
  counts(): { binaries: number; phones: number };
  /** Phones registered under a server-id whose binary is in its grace window. */
  parkedPhones(): number;
  /** False from the moment a drain starts. */
  readonly ready: boolean;
  /** Log lines suppressed per throttled event (keys: LOG_SUPPRESSED_EVENTS) and dropped lines. */
  logLines(): { suppressed: Readonly<Record<string, number>>; dropped: number };
}

/** The throttled log events (src/log-throttle.ts THROTTLED_EVENTS; a test keeps the two equal). */
export const LOG_SUPPRESSED_EVENTS = [
  'binary_forwarder_phone_enqueue_failed',
  'binary_forwarder_push_wake_dropped',
  'binary_forwarder_unknown_conn_id',
  'binary_forwarder_unmarshal_err',
  'conn_cap_reached',
  'rate_limited',
] as const;

export interface RelayMetricsOptions {
  /** Sizes the reclaim-latency buckets so they cover the grace window. */
  gracePeriodMs: number;
  version: string;
  /** Push wakes configured: the push_wakes_total family exists (absent otherwise). */
  push?: boolean;
  /** --https-proxy-protocol: the proxy_protocol_refusals_total family exists (absent otherwise). */
  proxyProtocol?: boolean;
  /** TLS modes: when the served certificate expires (Unix ms), null while there is none; the
   * tls_cert_expiry_timestamp_seconds gauge exists only with it. */
  tlsCertExpiryMs?: () => number | null;
}

/** Why the PROXY v2 listener refused a connection (src/http/proxy-protocol.ts ProxyRejection plus
 * timeout, closed and no_peer_override; main.ts passes one to the other, so the compiler keeps
 * the two lists equal). */
const PROXY_REFUSALS = [
  'bad_command',
  'bad_signature',
  'bad_version',
  'closed',
  'header_too_large',
  'local_command',
  'no_peer_override',
  'short_address_block',
  'timeout',
  'unsupported_family',
] as const;
export type ProxyRefusal = (typeof PROXY_REFUSALS)[number];

// ---- Operator signals beyond the reference (docs/metrics.md, "Operator signals") ----

/** Why a phone frame (phone -> binary) was not forwarded. */
const PHONE_FRAME_DROPS = ['closing', 'malformed_frame', 'no_binary', 'write_failed'] as const;
export type PhoneFrameDrop = (typeof PHONE_FRAME_DROPS)[number];
/** Why a binary frame (binary -> phone) was not forwarded. */
const BINARY_FRAME_DROPS = [
  'backlog_full',
  'closing',
  'malformed_envelope',
  'phone_gone',
  'shutdown',
  'unknown_conn_id',
  'write_failed',
] as const;
export type BinaryFrameDrop = (typeof BINARY_FRAME_DROPS)[number];

/** Why a WebSocket connection ended, on either endpoint (one per connection). Peer-initiated
 * reasons carry the code the peer sent; the others name the relay's decision. */
const COMMON_CLOSE_REASONS = [
  // The peer closed first, or vanished.
  'abrupt',
  'going_away_1001',
  'no_status_1005',
  'normal_1000',
  'other_code',
  // ws closed the connection for a protocol violation by the peer.
  'invalid_payload_1007',
  'protocol_error_1002',
  'too_big_1009',
  // The relay closed it.
  'heartbeat_timeout',
  'ping_flood',
  'read_timeout_1008',
  'shutdown',
  'write_failed',
] as const;
/** Reasons only a phone's connection ends for. */
const PHONE_CLOSE_REASONS = [
  'at_cap_4429',
  'backlog_full',
  'directive',
  'evicted_4404',
  'forward_failed',
  'grace_expired',
  'malformed_frame',
  'no_binary',
  'no_server_4404',
] as const;
/** Reasons only a binary's connection ends for. */
const BINARY_CLOSE_REASONS = ['conflict_4409', 'probe_aborted', 'taken_over'] as const;
export type CloseReason =
  | (typeof COMMON_CLOSE_REASONS)[number]
  | (typeof PHONE_CLOSE_REASONS)[number]
  | (typeof BINARY_CLOSE_REASONS)[number];
/** Each endpoint's reasons in sorted order (the order their cells are created in). */
const CLOSE_REASONS: Record<Endpoint, readonly CloseReason[]> = {
  client: [...COMMON_CLOSE_REASONS, ...PHONE_CLOSE_REASONS].sort(),
  server: [...COMMON_CLOSE_REASONS, ...BINARY_CLOSE_REASONS].sort(),
};

/** The reason for a connection the relay did not close with a reason of its own. */
export function closeReasonFor(code: number, closedByRelay: boolean): CloseReason {
  if (closedByRelay && code === READ_TIMEOUT_CODE) return 'read_timeout_1008';
  switch (code) {
    case CLOSE_NORMAL:
      return 'normal_1000';
    case CLOSE_GOING_AWAY:
      return 'going_away_1001';
    case CLOSE_PROTOCOL_ERROR:
      return 'protocol_error_1002';
    case CLOSE_NO_STATUS:
      return 'no_status_1005';
    case CLOSE_ABNORMAL:
      return 'abrupt';
    case CLOSE_INVALID_PAYLOAD:
      return 'invalid_payload_1007';
    case CLOSE_MESSAGE_TOO_BIG:
      return 'too_big_1009';
    default:
      return 'other_code';
  }
}

/** Upgrade requests refused before a WebSocket existed, which the reference counts nowhere. */
const UPGRADE_REJECTIONS = [
  'bad_key_400',
  'bad_method_405',
  'bad_version_400',
  'conn_cap_503',
  'draining_503',
  'not_websocket_426',
] as const;
export type UpgradeRejection = (typeof UPGRADE_REJECTIONS)[number];

/** HTTP-level failures on the public listener, before any route runs (or no route matched). */
const HTTP_ERRORS = ['bad_request_400', 'header_timeout_408', 'header_too_large_431', 'not_found_404'] as const;
export type HttpError = (typeof HTTP_ERRORS)[number];

/** One cell of a labelled counter: the key its event method names, and its label set. */
type Cell<K extends string> = readonly [key: K, attributes: Attributes];

/** Cells for one label: `values` in order, keyed by value. */
function cellsOf<V extends string>(label: string, values: readonly V[]): Cell<V>[] {
  return values.map((value) => [value, { [label]: value }]);
}

/** Cells for `endpoint` and one more label: each endpoint in order, then its values in order,
 * keyed `endpoint/value`. */
function endpointCellsOf<V extends string>(
  label: string,
  valuesFor: (endpoint: Endpoint) => readonly V[],
): Cell<`${Endpoint}/${V}`>[] {
  return ENDPOINTS.flatMap((endpoint) =>
    valuesFor(endpoint).map(
      (value): Cell<`${Endpoint}/${V}`> => [`${endpoint}/${value}`, { endpoint, [label]: value }],
    ),
  );
}

/** A labelled counter whose every cell exists from boot, in the given order, so the scrape has its
 * full, stable shape from the first second. The cells are plain integers that an observable
 * counter reads at collection time, like the frame counts: `add(key)` is an increment, not an SDK
 * call that hashes the attribute set (about 3 % of the CPU of accepting a connection when these
 * were synchronous Counters; docs/performance.md, "Where the targets stand"). The scrape is the same: a
 * cumulative monotonic sum either way. */
class LabelledCounter<K extends string> {
  private readonly index = new Map<K, number>();
  private readonly counts: number[];

  constructor(meter: Meter, name: string, description: string, cells: readonly Cell<K>[]) {
    const attributes = cells.map(([, attrs]) => Object.freeze(attrs));
    for (const [i, [key]] of cells.entries()) this.index.set(key, i);
    this.counts = cells.map(() => 0);
    meter.createObservableCounter(name, { description }).addCallback((result: ObservableResult) => {
      for (let i = 0; i < attributes.length; i++) result.observe(this.counts[i]!, attributes[i]);
    });
  }

  add(key: K): void {
    const i = this.index.get(key);
    if (i !== undefined) this.counts[i]!++;
  }
}

/** Reclaim-latency buckets as fractions of the grace window. */
const RECLAIM_BUCKET_FRACTIONS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1];

export const SIGNAL_HELP = {
  buildInfo: 'Build information: always 1, labelled with the relay version and the Node.js version running it.',
  bytesForwarded:
    'Bytes the relay wrote to the receiving socket, by direction: routing envelopes towards the binary (phone_to_binary), inner frames towards phones (binary_to_phone). Moves when a frame counts in pyrycode_relay_frames_forwarded_total.',
  bytesReceived:
    'Bytes of the messages counted in pyrycode_relay_frames_received_total (whole routing envelopes for binary_to_phone), by direction. Moves when the message is read.',
  connectionsClosed:
    "WebSocket connections that ended, by endpoint and reason: the code the peer closed with (normal_1000, going_away_1001, no_status_1005, other_code), abrupt when the socket ended without a close frame, or the relay's own reason. One increment per connection, when its socket is gone.",
  framesDropped:
    'Frames the relay read but did not forward, by direction and reason. Moves when the frame is given up; received = forwarded + dropped for each direction once traffic is idle.',
  framesReceived:
    'Frames the relay read, by direction: every message from a phone, and every message from a binary except push-wake requests and close directives without a frame. Moves when the message is read.',
  graceReclaimSeconds:
    'Seconds between a binary disconnecting and its successor reclaiming the server-id within the grace window. One observation per reclaim; every bucket is 0 until the first reclaim.',
  graceReclaims:
    'Binaries that claimed a server-id while it was in its grace window (the previous binary came back, or its successor took over its phones). Moves with the claim.',
  httpErrors:
    'Requests on the public listener answered with an HTTP error before any endpoint ran: malformed requests (400), header timeout (408), headers over 64 KiB (431), unknown paths (404). One increment per answered request.',
  logLinesDropped:
    'Log lines dropped because stderr backed up (more than 1 MiB of unwritten output: a slow or stuck reader of the pipe). Moves when the line is dropped.',
  logLinesSuppressed:
    'Log lines not written because their cause repeated (the first lines per connection or client address are written, then one log_suppressed summary line), by event. Moves when the line is suppressed.',
  phonesParked:
    'Phones registered under a server-id whose binary is in its grace window (connected, waiting for the binary to come back). Computed at collection.',
  proxyProtocolRefusals:
    'Connections the PROXY protocol v2 listener (--https-proxy-protocol) closed without a byte written, by reason: a header that is not v2 (bad_signature, bad_version), a command other than PROXY (local_command, bad_command), a family other than TCP4/TCP6, a malformed or oversized header, no complete header within 5 s (timeout), or the peer leaving first (closed). One increment per refused connection.',
  rateLimitTableFull:
    "Upgrade requests refused with 429 because the rate limiter's bucket table was full of buckets in use, so the request's client address could not get a bucket. Each also counts in pyrycode_relay_ws_upgrade_attempts_total{outcome=reject_rate_limit}.",
  tlsCertExpiry:
    'When the TLS certificate the relay serves expires, in Unix seconds (static TLS and autocert only); 0 while autocert has no certificate yet. Read at collection.',
  ready:
    'Whether /readyz answers 200: 1 while serving, 0 from the moment a drain starts, so load balancers stop sending new connections before peers are closed.',
  upgradeRejections:
    'Requests on /v1/server and /v1/client refused without a WebSocket for a reason pyrycode_relay_ws_upgrade_attempts_total does not count, by endpoint and reason: connection cap or drain (503), or a broken WebSocket handshake (400/405/426). One increment per refused request.',
} as const;

export class RelayMetrics {
  // ---- Plain tallies (read by observable instruments and /healthz) ----

  /** Envelopes the binary's socket accepted for a phone frame (phone -> binary). Moves in the send
   * callback after a successful write; close notices are not counted. */
  framesPhoneToBinary = 0;
  /** Frames a phone's outbox writer finished writing to the phone socket (binary -> phone),
   * including a close directive's frame. Enqueued-but-dropped frames never count. */
  framesBinaryToPhone = 0;
  /** Binary claims accepted since boot (fresh, reclaim and takeover). Moves with accept{server}. */
  binariesSinceBoot = 0;
  /** Phone registrations accepted since boot. Moves with accept{client}. */
  phonesSinceBoot = 0;

  /** Messages read from phones (each one is a frame for the binary). */
  framesReceivedPhoneToBinary = 0;
  /** Messages read from binaries that carry a frame for a phone, or cannot be classified. */
  framesReceivedBinaryToPhone = 0;
  bytesReceivedPhoneToBinary = 0;
  bytesReceivedBinaryToPhone = 0;
  /** Envelope bytes the binary's socket accepted (moves with framesPhoneToBinary). */
  bytesForwardedPhoneToBinary = 0;
  /** Inner-frame bytes a phone's socket accepted (moves with framesBinaryToPhone). */
  bytesForwardedBinaryToPhone = 0;
  /** Phone frames given up, by reason. */
  readonly droppedPhoneToBinary: Record<PhoneFrameDrop, number> = {
    closing: 0,
    malformed_frame: 0,
    no_binary: 0,
    write_failed: 0,
  };
  /** Binary frames given up, by reason. */
  readonly droppedBinaryToPhone: Record<BinaryFrameDrop, number> = {
    backlog_full: 0,
    closing: 0,
    malformed_envelope: 0,
    phone_gone: 0,
    shutdown: 0,
    unknown_conn_id: 0,
    write_failed: 0,
  };

  // ---- Synchronous OTel counters (control plane) ----
  private readonly upgradeAttempts: LabelledCounter<`${Endpoint}/${Outcome}`>;
  private readonly registerFailures: LabelledCounter<FailureKind>;
  private readonly graceExpiries: Counter;
  /** Only when push is on. */
  private readonly pushWakes: LabelledCounter<PushOutcome> | undefined;
  private readonly connectionsClosed: LabelledCounter<`${Endpoint}/${CloseReason}`>;
  private readonly upgradeRejections: LabelledCounter<`${Endpoint}/${UpgradeRejection}`>;
  private readonly httpErrors: LabelledCounter<HttpError>;
  private readonly graceReclaims: Counter;
  private readonly graceReclaimSeconds: Histogram;
  private readonly rateLimitTableFullTotal: Counter;
  /** Only with --https-proxy-protocol. */
  private readonly proxyRefusals: LabelledCounter<ProxyRefusal> | undefined;

  constructor(meter: Meter, counts: CountsSource, options: RelayMetricsOptions) {
    // Sorted by final metric name: connected_binaries, connected_phones, frames_forwarded_total,
    // grace_expiries_total, push_wakes_total (push on only), register_failures_total,
    // ws_upgrade_attempts_total.
    meter
      .createObservableGauge('pyrycode_relay_connected_binaries', { description: HELP.connectedBinaries })
      .addCallback((result: ObservableResult) => result.observe(counts.counts().binaries));
    meter
      .createObservableGauge('pyrycode_relay_connected_phones', { description: HELP.connectedPhones })
      .addCallback((result: ObservableResult) => result.observe(counts.counts().phones));
    meter
      .createObservableCounter('pyrycode_relay_frames_forwarded_total', { description: HELP.framesForwarded })
      .addCallback((result: ObservableResult) => {
        result.observe(this.framesBinaryToPhone, DIRECTION_B2P);
        result.observe(this.framesPhoneToBinary, DIRECTION_P2B);
      });

    this.graceExpiries = meter.createCounter('pyrycode_relay_grace_expiries_total', {
      description: HELP.graceExpiries,
    });
    this.graceExpiries.add(0);

    if (options.push === true) {
      this.pushWakes = new LabelledCounter(
        meter,
        'pyrycode_relay_push_wakes_total',
        HELP.pushWakes,
        cellsOf('outcome', PUSH_OUTCOMES),
      );
    }
    this.registerFailures = new LabelledCounter(
      meter,
      'pyrycode_relay_register_failures_total',
      HELP.registerFailures,
      cellsOf('kind', FAILURE_KINDS),
    );
    this.upgradeAttempts = new LabelledCounter(
      meter,
      'pyrycode_relay_ws_upgrade_attempts_total',
      HELP.upgradeAttempts,
      endpointCellsOf('outcome', () => OUTCOMES),
    );

    // ---- Operator signals, after the reference families, in name order ----
    const buildInfo = Object.freeze({ version: options.version, node_version: process.version });
    meter
      .createObservableGauge('pyrycode_relay_build_info', { description: SIGNAL_HELP.buildInfo })
      .addCallback((result) => result.observe(1, buildInfo));
    meter
      .createObservableCounter('pyrycode_relay_bytes_forwarded_total', { description: SIGNAL_HELP.bytesForwarded })
      .addCallback((result) => {
        result.observe(this.bytesForwardedBinaryToPhone, DIRECTION_B2P);
        result.observe(this.bytesForwardedPhoneToBinary, DIRECTION_P2B);
      });
    meter
      .createObservableCounter('pyrycode_relay_bytes_received_total', { description: SIGNAL_HELP.bytesReceived })
      .addCallback((result) => {
        result.observe(this.bytesReceivedBinaryToPhone, DIRECTION_B2P);
        result.observe(this.bytesReceivedPhoneToBinary, DIRECTION_P2B);
      });

    this.connectionsClosed = new LabelledCounter(
      meter,
      'pyrycode_relay_connections_closed_total',
      SIGNAL_HELP.connectionsClosed,
      endpointCellsOf('reason', (endpoint) => CLOSE_REASONS[endpoint]),
    );

    const dropCells = (direction: string, reasons: readonly string[]): [string, Attributes][] =>
      reasons.map((reason) => [reason, Object.freeze({ direction, reason })]);
    const b2pDrops = dropCells('binary_to_phone', BINARY_FRAME_DROPS);
    const p2bDrops = dropCells('phone_to_binary', PHONE_FRAME_DROPS);
    meter
      .createObservableCounter('pyrycode_relay_frames_dropped_total', { description: SIGNAL_HELP.framesDropped })
      .addCallback((result) => {
        for (const [reason, attrs] of b2pDrops)
          result.observe(this.droppedBinaryToPhone[reason as BinaryFrameDrop], attrs);
        for (const [reason, attrs] of p2bDrops)
          result.observe(this.droppedPhoneToBinary[reason as PhoneFrameDrop], attrs);
      });
    meter
      .createObservableCounter('pyrycode_relay_frames_received_total', { description: SIGNAL_HELP.framesReceived })
      .addCallback((result) => {
        result.observe(this.framesReceivedBinaryToPhone, DIRECTION_B2P);
        result.observe(this.framesReceivedPhoneToBinary, DIRECTION_P2B);
      });

    const graceSeconds = options.gracePeriodMs / 1000;
    this.graceReclaimSeconds = meter.createHistogram('pyrycode_relay_grace_reclaim_seconds', {
      description: SIGNAL_HELP.graceReclaimSeconds,
      advice: { explicitBucketBoundaries: RECLAIM_BUCKET_FRACTIONS.map((f) => roundSeconds(f * graceSeconds)) },
    });
    this.graceReclaims = meter.createCounter('pyrycode_relay_grace_reclaims_total', {
      description: SIGNAL_HELP.graceReclaims,
    });
    this.graceReclaims.add(0);

    this.httpErrors = new LabelledCounter(
      meter,
      'pyrycode_relay_http_errors_total',
      SIGNAL_HELP.httpErrors,
      cellsOf('reason', HTTP_ERRORS),
    );

    meter
      .createObservableCounter('pyrycode_relay_log_lines_dropped_total', { description: SIGNAL_HELP.logLinesDropped })
      .addCallback((result) => result.observe(counts.logLines().dropped));
    const suppressedCells = LOG_SUPPRESSED_EVENTS.map((event) => [event, Object.freeze({ event })] as const);
    meter
      .createObservableCounter('pyrycode_relay_log_lines_suppressed_total', {
        description: SIGNAL_HELP.logLinesSuppressed,
      })
      .addCallback((result) => {
        const suppressed = counts.logLines().suppressed;
        for (const [event, attrs] of suppressedCells) result.observe(suppressed[event] ?? 0, attrs);
      });
    meter
      .createObservableGauge('pyrycode_relay_phones_parked', { description: SIGNAL_HELP.phonesParked })
      .addCallback((result) => result.observe(counts.parkedPhones()));
    if (options.proxyProtocol === true) {
      this.proxyRefusals = new LabelledCounter(
        meter,
        'pyrycode_relay_proxy_protocol_refusals_total',
        SIGNAL_HELP.proxyProtocolRefusals,
        cellsOf('reason', PROXY_REFUSALS),
      );
    }
    this.rateLimitTableFullTotal = meter.createCounter('pyrycode_relay_rate_limit_table_full_total', {
      description: SIGNAL_HELP.rateLimitTableFull,
    });
    this.rateLimitTableFullTotal.add(0);
    meter
      .createObservableGauge('pyrycode_relay_ready', { description: SIGNAL_HELP.ready })
      .addCallback((result) => result.observe(counts.ready ? 1 : 0));
    const tlsCertExpiryMs = options.tlsCertExpiryMs;
    if (tlsCertExpiryMs !== undefined) {
      meter
        .createObservableGauge('pyrycode_relay_tls_cert_expiry_timestamp_seconds', {
          description: SIGNAL_HELP.tlsCertExpiry,
        })
        .addCallback((result) => result.observe(Math.floor((tlsCertExpiryMs() ?? 0) / 1000)));
    }

    this.upgradeRejections = new LabelledCounter(
      meter,
      'pyrycode_relay_upgrade_rejections_total',
      SIGNAL_HELP.upgradeRejections,
      endpointCellsOf('reason', () => UPGRADE_REJECTIONS),
    );
  }

  // ---- Operator signal events ----

  /** A WebSocket connection's socket is gone (once per connection). */
  connectionClosed(endpoint: Endpoint, reason: CloseReason): void {
    this.connectionsClosed.add(`${endpoint}/${reason}`);
  }

  /** An upgrade request was refused before a WebSocket existed (not by the rate limiter or the
   * header gate, which the reference families count). */
  upgradeRejected(endpoint: Endpoint, reason: UpgradeRejection): void {
    this.upgradeRejections.add(`${endpoint}/${reason}`);
  }

  /** The PROXY v2 listener closed a connection without serving it. */
  proxyRefused(reason: ProxyRefusal): void {
    this.proxyRefusals?.add(reason);
  }

  /** A 429 because the rate limiter's table was full (also counted by rateLimited). */
  rateLimitTableFull(): void {
    this.rateLimitTableFullTotal.add(1);
  }

  /** The public listener answered a request with an HTTP error before any endpoint ran. */
  httpError(reason: HttpError): void {
    this.httpErrors.add(reason);
  }

  /** A binary claimed a server-id in grace, `elapsedMs` after its predecessor disconnected. */
  graceReclaimed(elapsedMs: number): void {
    this.graceReclaims.add(1);
    this.graceReclaimSeconds.record(elapsedMs / 1000);
  }

  // ---- Composite event methods: one call per terminal decision ----

  /** A binary claim succeeded (fresh, reclaim or takeover). */
  serverAccepted(): void {
    this.binariesSinceBoot++;
    this.upgrade('server', 'accept');
  }

  /** A phone registration succeeded. */
  clientAccepted(): void {
    this.phonesSinceBoot++;
    this.upgrade('client', 'accept');
  }

  /** Header gate refused the request with HTTP 400 (no register failure). */
  headersRejected(endpoint: Endpoint): void {
    this.upgrade(endpoint, 'reject_headers');
  }

  /** The per-IP limiter answered HTTP 429 (either deny branch, including an unattributable IP). */
  rateLimited(endpoint: Endpoint): void {
    this.upgrade(endpoint, 'reject_rate_limit');
    this.failure('ratelimit');
  }

  /** A claim was refused with 4409 because the incumbent answered the liveness probe. */
  serverInUse(): void {
    this.upgrade('server', 'reject_409');
    this.failure('server_in_use');
  }

  /** A phone was refused with 4404: no binary holds its server-id. */
  clientNoServer(): void {
    this.upgrade('client', 'reject_404');
    this.failure('no_server');
  }

  /** A phone was refused with 4429: its server-id already has the maximum number of phones. */
  clientAtCap(): void {
    this.upgrade('client', 'reject_429');
    this.failure('phones_at_cap');
  }

  /** A grace timer passed the stale-fire guard and evicted a slot (after its phones were closed). */
  graceExpired(): void {
    this.graceExpiries.add(1);
  }

  // ---- Push wakes (docs/metrics.md, "Push wakes"); no-ops when push is off ----

  /** A wake refused by the per-server-id rate limit or the relay-wide in-flight cap (malformed
   * wakes and push-off refusals count nothing). */
  pushDropped(): void {
    this.push('dropped');
  }

  /** An admitted wake's send returned success (with or without a message name). */
  pushSent(): void {
    this.push('sent');
  }

  /** An admitted wake's send returned FCM errorCode UNREGISTERED. */
  pushUnregistered(): void {
    this.push('unregistered');
  }

  /** An admitted wake's OAuth2 access-token fetch failed. */
  pushTokenFetchFailed(): void {
    this.push('token_fetch_failed');
  }

  /** An admitted wake's send failed otherwise: an FCM error, a timeout, a transport error, or
   * cancellation at shutdown. */
  pushSendFailed(): void {
    this.push('send_failed');
  }

  private push(outcome: PushOutcome): void {
    this.pushWakes?.add(outcome);
  }

  private upgrade(endpoint: Endpoint, outcome: Outcome): void {
    this.upgradeAttempts.add(`${endpoint}/${outcome}`);
  }

  private failure(kind: FailureKind): void {
    this.registerFailures.add(kind);
  }
}

/** Bucket bounds in seconds, rounded to 3 significant digits so the `le` labels stay readable. */
function roundSeconds(seconds: number): number {
  return Number(seconds.toPrecision(3));
}
