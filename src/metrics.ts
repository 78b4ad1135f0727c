// Every counter the relay keeps, declared in one place, each with the exact moment it moves.
//
// Two kinds of state live here:
// - Plain integer tallies owned by the core (hot path and live counts). OTel observable
//   instruments read them at collection time, and /healthz reads the same numbers: one source of
//   truth, ~2 ns per increment, independent of how many readers are attached.
// - Synchronous OTel Counters for control-plane events (a few per connection at most), with
//   frozen attribute objects built once. Paired series move together through composite event
//   methods, so `register_failures_total` and the matching `ws_upgrade_attempts_total` cells can
//   never disagree.
//
// Label values are constants. Nothing taken from a header, an id or a payload becomes a label.
// Instruments are created in sorted name order and cells pre-bound at 0 in sorted label order, so
// the scrape has the same stable shape as the reference relay from the first second.

import type { Attributes, Counter, Meter, ObservableResult } from '@opentelemetry/api';

/** Exact HELP texts of relay-behaviour.md section 8.2 (part of the operator contract). */
export const HELP = {
  connectedBinaries: 'Number of pyrycode binary connections currently held by the relay registry.',
  connectedPhones:
    'Number of mobile client connections currently held by the relay registry, summed across all server-ids.',
  framesForwarded:
    'Number of frames forwarded by the relay, labelled by direction. Increments once per successful sink Send; per-frame error and skip paths do not increment.',
  graceExpiries:
    'Number of grace-window timers that actually evicted a server-id slot. Stale fires (cancel-and-replace races) do not increment.',
  registerFailures:
    'Registry-side registration failures by kind. Co-incremented with the matching pyrycode_relay_ws_upgrade_attempts_total{outcome=reject_*} series; their sum on kind equals the sum on the matching outcome value.',
  upgradeAttempts:
    'WebSocket upgrade attempts by endpoint and outcome. One increment per terminal decision; a single request never increments more than once.',
} as const;

export type Endpoint = 'server' | 'client';
type Outcome = 'accept' | 'reject_404' | 'reject_409' | 'reject_429' | 'reject_headers' | 'reject_rate_limit';
type FailureKind = 'no_server' | 'phones_at_cap' | 'ratelimit' | 'server_in_use';

const ENDPOINTS: readonly Endpoint[] = ['client', 'server'];
const OUTCOMES: readonly Outcome[] = [
  'accept',
  'reject_404',
  'reject_409',
  'reject_429',
  'reject_headers',
  'reject_rate_limit',
];
const FAILURE_KINDS: readonly FailureKind[] = ['no_server', 'phones_at_cap', 'ratelimit', 'server_in_use'];

const DIRECTION_P2B: Attributes = Object.freeze({ direction: 'phone_to_binary' });
const DIRECTION_B2P: Attributes = Object.freeze({ direction: 'binary_to_phone' });

/** Live counts the registry computes on demand (relay-behaviour.md 3.7). */
export interface CountsSource {
  counts(): { binaries: number; phones: number };
}

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

  // ---- Synchronous OTel counters (control plane) ----
  private readonly upgradeAttempts: Counter;
  private readonly registerFailures: Counter;
  private readonly graceExpiries: Counter;
  private readonly upgradeCells = new Map<string, Attributes>();
  private readonly failureCells = new Map<FailureKind, Attributes>();

  constructor(meter: Meter, counts: CountsSource) {
    // Sorted by final metric name: connected_binaries, connected_phones, frames_forwarded_total,
    // grace_expiries_total, register_failures_total, ws_upgrade_attempts_total.
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

    this.registerFailures = meter.createCounter('pyrycode_relay_register_failures_total', {
      description: HELP.registerFailures,
    });
    for (const kind of FAILURE_KINDS) {
      const attrs = Object.freeze({ kind });
      this.failureCells.set(kind, attrs);
      this.registerFailures.add(0, attrs);
    }

    this.upgradeAttempts = meter.createCounter('pyrycode_relay_ws_upgrade_attempts_total', {
      description: HELP.upgradeAttempts,
    });
    for (const endpoint of ENDPOINTS) {
      for (const outcome of OUTCOMES) {
        const attrs = Object.freeze({ endpoint, outcome });
        this.upgradeCells.set(`${endpoint}/${outcome}`, attrs);
        this.upgradeAttempts.add(0, attrs);
      }
    }
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

  private upgrade(endpoint: Endpoint, outcome: Outcome): void {
    this.upgradeAttempts.add(1, this.upgradeCells.get(`${endpoint}/${outcome}`));
  }

  private failure(kind: FailureKind): void {
    this.registerFailures.add(1, this.failureCells.get(kind));
  }
}
