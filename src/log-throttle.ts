// Per-cause log throttling (docs/operations.md "Log volume"): an attacker's input must never cost
// more to log than to route.
//
// Events a peer can repeat at will (a malformed envelope, an unknown conn_id, a refused push wake,
// a 429, ...) pass their first LOG_FIRST_LINES_PER_KEY lines per key (the binary connection, the
// client address or the phone, named by one field of the line) and per LOG_THROTTLE_WINDOW_MS,
// and at most LOG_LINES_PER_EVENT lines per event in that window across all keys. The rest are
// counted (the tallies the suppressed-lines metric reads) and reported every
// LOG_SUMMARY_INTERVAL_MS, and at the drain, as one `log_suppressed event=… count=…` line per
// event. The key table is bounded: when full of live windows, a new key's lines are suppressed.
// Every other event passes through untouched.

import type { LogFields, Logger, LogKey } from './log.js';

/** The throttled events and the field whose value is the key of "the same cause". */
export const THROTTLED_EVENTS = {
  binary_forwarder_phone_enqueue_failed: 'conn_id',
  binary_forwarder_push_wake_dropped: 'binary_conn_id',
  binary_forwarder_unknown_conn_id: 'server_id',
  binary_forwarder_unmarshal_err: 'binary_conn_id',
  conn_cap_reached: 'remote',
  rate_limited: 'remote',
} as const satisfies Record<string, LogKey>;

export type ThrottledEvent = keyof typeof THROTTLED_EVENTS;
export const THROTTLED_EVENT_NAMES = Object.keys(THROTTLED_EVENTS).sort() as ThrottledEvent[];

/** Lines each key may log per window. */
export const LOG_FIRST_LINES_PER_KEY = 10;
/** Lines each event may log per window, all keys together. */
export const LOG_LINES_PER_EVENT = 100;
export const LOG_THROTTLE_WINDOW_MS = 60_000;
/** How often pending suppressed counts are logged. */
export const LOG_SUMMARY_INTERVAL_MS = 10_000;
/** Most keys tracked at once. */
export const LOG_THROTTLE_MAX_KEYS = 10_000;

interface Window {
  startMs: number;
  lines: number;
}

export interface LogThrottleOptions {
  now?: () => number;
}

export class ThrottledLogger implements Logger {
  /** Lines suppressed since boot, per event (read by the metric). */
  readonly suppressed: Record<ThrottledEvent, number>;
  private readonly pending = new Map<ThrottledEvent, number>();
  private readonly keys = new Map<string, Window>();
  private readonly events = new Map<ThrottledEvent, Window>();
  private readonly now: () => number;
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    /** Where admitted lines go (forwarded as they are: their call sites are the ones checked). */
    private readonly out: Logger,
    options: LogThrottleOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.suppressed = Object.fromEntries(THROTTLED_EVENT_NAMES.map((e) => [e, 0])) as Record<ThrottledEvent, number>;
  }

  /** Lines the underlying logger dropped because its output backed up. */
  get droppedLines(): number {
    return this.out.droppedLines ?? 0;
  }

  info(event: string, fields?: LogFields): void {
    if (this.admit(event, fields)) this.out.info(event, fields);
  }

  warn(event: string, fields?: LogFields): void {
    if (this.admit(event, fields)) this.out.warn(event, fields);
  }

  error(event: string, fields?: LogFields): void {
    if (this.admit(event, fields)) this.out.error(event, fields);
  }

  /** Starts the periodic summary (unref'd: it never keeps the process alive). */
  start(intervalMs: number = LOG_SUMMARY_INTERVAL_MS): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => this.flush(), intervalMs);
    this.timer.unref();
  }

  /** Logs one `log_suppressed` line per event with lines suppressed since the last one, and
   * forgets windows that ended. */
  flush(): void {
    const log = this.out;
    for (const event of THROTTLED_EVENT_NAMES) {
      const count = this.pending.get(event);
      if (count === undefined) continue;
      this.pending.delete(event);
      log.warn('log_suppressed', { event, count });
    }
    const now = this.now();
    for (const [key, window] of this.keys) if (now - window.startMs >= LOG_THROTTLE_WINDOW_MS) this.keys.delete(key);
  }

  /** Final summary and no more timer (the drain). */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.flush();
  }

  private admit(event: string, fields: LogFields | undefined): boolean {
    if (!Object.hasOwn(THROTTLED_EVENTS, event)) return true;
    const throttled = event as ThrottledEvent;
    const now = this.now();
    const key = `${throttled}\n${String(fields?.[THROTTLED_EVENTS[throttled]] ?? '')}`;
    let window = this.keys.get(key);
    if (window !== undefined && now - window.startMs >= LOG_THROTTLE_WINDOW_MS) {
      window.startMs = now;
      window.lines = 0;
    }
    if (window === undefined && this.keys.size < LOG_THROTTLE_MAX_KEYS) {
      window = { startMs: now, lines: 0 };
      this.keys.set(key, window);
    }
    let eventWindow = this.events.get(throttled);
    if (eventWindow === undefined || now - eventWindow.startMs >= LOG_THROTTLE_WINDOW_MS) {
      eventWindow = { startMs: now, lines: 0 };
      this.events.set(throttled, eventWindow);
    }
    if (window === undefined || window.lines >= LOG_FIRST_LINES_PER_KEY || eventWindow.lines >= LOG_LINES_PER_EVENT) {
      this.suppressed[throttled]++;
      this.pending.set(throttled, (this.pending.get(throttled) ?? 0) + 1);
      return false;
    }
    window.lines++;
    eventWindow.lines++;
    return true;
  }
}
