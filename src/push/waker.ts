// Push wakes (docs/protocol.md, "Push wakes"): a binary asks the relay to wake a phone through FCM with
// `{"push_wake":{"platform":"fcm","token":"…"}}` (no conn_id).
//
// wake() decides at once and never waits: push off → malformed → rate limit → in-flight cap, each a
// refusal (dropped, never queued); an admitted wake sends on its own promise with the relay-lifetime
// AbortSignal, so it outlives the binary that asked and is cancelled only by close() at shutdown.
//
// Accounting: every refusal logs `binary_forwarder_push_wake_dropped`; only the rate-limit and
// in-flight-cap refusals count `dropped`. Every admitted wake counts exactly one of sent /
// unregistered / token_fetch_failed / send_failed when its send returns (classified by error
// class, never by text), then logs exactly one outcome line (`push_wake_sent` or
// `push_wake_send_failed`). The device token is never logged: only token_fp, the first 8 hex chars
// of its SHA-256.

import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { performance } from 'node:perf_hooks';
import { formatDuration } from '../duration.js';
import { FcmError, FcmSender, FcmTokenFetchError, FcmUnregisteredError, type FcmOptions } from './fcm.js';
import { decodeString, scanString, scanValue, skipWhitespace } from '../protocol/json.js';
import type { Logger } from '../log.js';
import type { RelayMetrics } from '../metrics/metrics.js';
import { RateLimiter } from '../http/rate-limiter.js';

/** Per-server-id token bucket: burst 6, one wake back every 10 s. */
export const PUSH_RATE_BURST = 6;
export const PUSH_RATE_INTERVAL_MS = 10_000;
/** Relay-wide cap on sends in flight. */
export const PUSH_MAX_IN_FLIGHT = 32;
/** How long close() waits for cancelled sends to report. */
export const PUSH_CLOSE_TIMEOUT_MS = 5_000;

/** Refusal reasons (the `err` of binary_forwarder_push_wake_dropped): fixed texts only. */
export const PUSH_OFF = 'push off';
export const PUSH_MALFORMED = 'malformed push_wake';
export const PUSH_RATE_LIMITED = 'rate-limited';
export const PUSH_IN_FLIGHT_CAP = 'in-flight cap';

/** What sends a wake: FcmSender in production. Rejections should be FcmError subclasses. */
export interface WakeSender {
  send(deviceToken: string, signal: AbortSignal): Promise<string>;
  close(): void;
}

/** The push configuration the daemon builds from PYRYCODE_RELAY_FCM_CREDENTIALS and the endpoint
 * env vars; absent = push off. */
export type PushOptions = FcmOptions;

/** First 8 lowercase hex chars of SHA-256(token): correlates log lines without the token. */
export function tokenFingerprint(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex').slice(0, 8);
}

/**
 * The device token of a push_wake value (its raw JSON bytes), or null when it is malformed: not an
 * object, `platform` or `token` not a string, `platform` not exactly "fcm", or `token` empty.
 * Decoded like Go's encoding/json into {Platform, Token string}: keys match case-insensitively
 * (with Go's K/S folds), the last duplicate wins, unknown keys are ignored, null leaves a field
 * unchanged. The input was validated as JSON by the envelope decoder.
 */
export function parsePushWake(raw: Buffer): string | null {
  const n = raw.length;
  let i = skipWhitespace(raw, 0, n);
  if (raw[i] !== 0x7b /* { */) return null;
  let platform = '';
  let token = '';
  i = skipWhitespace(raw, i + 1, n);
  if (raw[i] === 0x7d /* } */) return null; // both fields empty
  for (;;) {
    const ke = scanString(raw, i, n);
    if (ke < 0) return null;
    const key = foldKey(decodeString(raw, i, ke));
    i = skipWhitespace(raw, ke, n);
    if (raw[i] !== 0x3a /* : */) return null;
    const vs = skipWhitespace(raw, i + 1, n);
    const ve = scanValue(raw, vs, n);
    if (ve < 0) return null;
    if (key === 'platform' || key === 'token') {
      const first = raw[vs];
      if (first === 0x22 /* " */) {
        const value = decodeString(raw, vs, ve);
        if (key === 'platform') platform = value;
        else token = value;
      } else if (first !== 0x6e /* null */) {
        return null; // a type error: the whole value is malformed
      }
    }
    i = skipWhitespace(raw, ve, n);
    if (raw[i] === 0x2c /* , */) {
      i = skipWhitespace(raw, i + 1, n);
      continue;
    }
    if (raw[i] === 0x7d /* } */) break;
    return null;
  }
  if (platform !== 'fcm' || token === '') return null;
  return token;
}

/** Go's case-insensitive match against ASCII field names: ASCII letters fold to lower case, and
 * U+212A KELVIN SIGN / U+017F LATIN SMALL LETTER LONG S fold to k / s. */
function foldKey(key: string): string {
  if (key.length > 16) return '';
  let out = '';
  for (const ch of key) {
    if (ch === '\u212a') out += 'k';
    else if (ch === '\u017f') out += 's';
    else if (ch >= 'A' && ch <= 'Z') out += ch.toLowerCase();
    else out += ch;
  }
  return out;
}

export interface PushWakerOptions {
  /** Clock for the per-server-id bucket; tests only. */
  now?: () => number;
}

export class PushWaker {
  private readonly limiter: RateLimiter;
  private readonly abort = new AbortController();
  private readonly inFlight = new Set<Promise<void>>();
  private closed = false;

  /** `sender` null = push off (every wake refused with "push off"). */
  constructor(
    private readonly sender: WakeSender | null,
    private readonly metrics: RelayMetrics,
    private readonly log: Logger,
    options: PushWakerOptions = {},
  ) {
    this.limiter = new RateLimiter({
      burst: PUSH_RATE_BURST,
      refillIntervalMs: PUSH_RATE_INTERVAL_MS,
      ...(options.now === undefined ? {} : { now: options.now }),
    });
    if (sender !== null) this.limiter.startSweeper();
    // Every send in flight (and the token fetch) listens on the one relay-lifetime signal.
    setMaxListeners(PUSH_MAX_IN_FLIGHT + 8, this.abort.signal);
  }

  /** Builds the waker for `options` (null = push off). */
  static create(options: PushOptions | null | undefined, metrics: RelayMetrics, log: Logger): PushWaker {
    return new PushWaker(options ? new FcmSender(options) : null, metrics, log);
  }

  /** True when credentials are configured and close() has not run. */
  get enabled(): boolean {
    return this.sender !== null && !this.closed;
  }

  /** Sends under way. */
  get inFlightCount(): number {
    return this.inFlight.size;
  }

  /** A wake request from the binary holding `serverId`. Returns at once; never throws. */
  wake(serverId: string, binaryConnId: string, pushWake: Buffer): void {
    let err: string;
    const sender = this.sender;
    if (sender === null || this.closed) {
      err = PUSH_OFF;
    } else {
      const token = parsePushWake(pushWake);
      if (token === null) {
        err = PUSH_MALFORMED;
      } else if (!this.limiter.allow(serverId)) {
        err = PUSH_RATE_LIMITED;
        this.metrics.pushDropped();
      } else if (this.inFlight.size >= PUSH_MAX_IN_FLIGHT) {
        err = PUSH_IN_FLIGHT_CAP;
        this.metrics.pushDropped();
      } else {
        const task: Promise<void> = this.send(sender, serverId, token).finally(() => this.inFlight.delete(task));
        this.inFlight.add(task);
        return;
      }
    }
    this.log.warn('binary_forwarder_push_wake_dropped', { server_id: serverId, binary_conn_id: binaryConnId, err });
  }

  /** One admitted wake: exactly one outcome counted, then exactly one line logged. Never rejects. */
  private async send(sender: WakeSender, serverId: string, token: string): Promise<void> {
    const started = performance.now();
    const tokenFp = tokenFingerprint(token);
    let name: string;
    try {
      name = await sender.send(token, this.abort.signal);
    } catch (e) {
      let err: string;
      if (e instanceof FcmUnregisteredError) {
        this.metrics.pushUnregistered();
        err = e.message;
      } else if (e instanceof FcmTokenFetchError) {
        this.metrics.pushTokenFetchFailed();
        err = e.message;
      } else {
        // FcmSendFailedError, FcmCancelledError (shutdown), and anything unexpected.
        this.metrics.pushSendFailed();
        err = e instanceof FcmError ? e.message : 'relay: fcm send failed: internal error';
      }
      this.log.warn('push_wake_send_failed', {
        server_id: serverId,
        token_fp: tokenFp,
        duration: formatDuration(performance.now() - started),
        err,
      });
      return;
    }
    this.metrics.pushSent();
    this.log.info('push_wake_sent', {
      server_id: serverId,
      token_fp: tokenFp,
      duration: formatDuration(performance.now() - started),
      fcm_message_id: name === '' ? undefined : name,
    });
  }

  /**
   * Shutdown (after the relay's drain): refuses new wakes, cancels the sends in flight (each counts
   * send_failed and logs push_wake_send_failed) and waits up to `timeoutMs` for them to report.
   * Idempotent.
   */
  async close(timeoutMs: number = PUSH_CLOSE_TIMEOUT_MS): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.limiter.stopSweeper();
      this.abort.abort();
    }
    if (this.inFlight.size > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.allSettled([...this.inFlight]),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, timeoutMs);
        }),
      ]);
      clearTimeout(timer);
    }
    this.sender?.close();
  }
}
