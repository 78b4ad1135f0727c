// Structured logging: one line per event on stderr, the event name as the message.
//
// Keys come from a closed allowlist (LOG_KEYS). The type of `LogFields` makes an unknown key a
// compile error, and the logger drops any key outside the list at run time as a second guard, so
// a token, header value or payload cannot reach a log line through a new, unreviewed key.
//
// The output never queues without bound: stderr may be a pipe whose reader is slow or gone
// (journald, a container runtime), and Node then buffers every write in memory. Above
// MAX_PENDING_LOG_BYTES of unwritten output, lines are dropped and counted (droppedLines); the
// next line that fits is preceded by one `log_dropped count=N` line. Per-cause throttling of
// events a peer can repeat is log-throttle.ts.

/** Keys the relay core may log (docs/operations.md, "Keys"). */
export const CORE_LOG_KEYS = [
  'server_id',
  'conn_id',
  'binary_conn_id',
  'device_name',
  'remote',
  'binary_version',
  'err',
  'path',
  'from',
  'to',
  'close_code',
  'token_fp',
  'fcm_message_id',
  'duration',
  'event',
  'count',
] as const;

/** Keys only boot, shutdown and telemetry lines use. */
export const BOOT_LOG_KEYS = [
  'version',
  'mode',
  'listen',
  'domain',
  'cert_cache',
  'https_proxy_protocol',
  'env_var',
  'reason',
  'fix',
  'value',
  'effective_uid',
  'bypass_env_var',
  'unexpected_ports',
  'expected_ports',
  'addr',
  'flag',
  'exporter',
  'suppressed',
  'signal',
  'instance_id',
  'engine',
] as const;

export type LogKey = (typeof CORE_LOG_KEYS)[number] | (typeof BOOT_LOG_KEYS)[number];
export const LOG_KEYS: ReadonlySet<string> = new Set<string>([...CORE_LOG_KEYS, ...BOOT_LOG_KEYS]);

export type LogValue = string | number | boolean | undefined;

/** Longer values are cut: a peer-supplied id must not turn one event into a megabyte of log. */
export const MAX_LOG_VALUE_CHARS = 256;

function clip(value: string): string {
  return value.length > MAX_LOG_VALUE_CHARS ? value.slice(0, MAX_LOG_VALUE_CHARS) + '...(truncated)' : value;
}
export type LogFields = Partial<Record<LogKey, LogValue>>;
export type LogLevel = 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
export type LogFormat = 'text' | 'json';

export interface Logger {
  info(event: string, fields?: LogFields): void;
  warn(event: string, fields?: LogFields): void;
  error(event: string, fields?: LogFields): void;
  /** Lines dropped because the output backed up (loggers that can drop). */
  readonly droppedLines?: number;
}

/** Where log lines go; process.stderr by default. Tests pass a collector. A sink that reports
 * `writableLength` (a stream) is bounded by MAX_PENDING_LOG_BYTES. */
export interface LogSink {
  write(line: string): unknown;
  readonly writableLength?: number;
  on?(event: 'error', listener: (err: Error) => void): unknown;
}

/** Unwritten log output allowed before lines are dropped. */
export const MAX_PENDING_LOG_BYTES = 1024 * 1024;
/** A coalesced batch is written once it holds this many characters, well below the bound above,
 * so coalescing never drops a line the sink itself would have taken. */
export const MAX_COALESCED_LOG_CHARS = 64 * 1024;

/** Sinks that already have the error guard (process.stderr is shared by every logger). */
const guardedSinks = new WeakSet<object>();

export interface LoggerOptions {
  /** Lines logged in one turn of the event loop leave in one write at the end of the turn (and
   * at process exit) instead of one write each. The daemon sets it for stderr: a write to a file
   * or pipe is a system call of a few microseconds, and a burst of connections logs a line each
   * (docs/performance.md, "Where the targets stand"). Every line, its order and its fields stay the same. */
  coalesce?: boolean;
}

export function createLogger(
  format: LogFormat = 'text',
  sink: LogSink = process.stderr,
  options: LoggerOptions = {},
): Logger {
  // A reader that went away (EPIPE) must not crash the relay through an unhandled 'error' event.
  if (typeof sink.on === 'function' && !guardedSinks.has(sink)) {
    guardedSinks.add(sink);
    sink.on('error', () => {});
  }
  let dropped = 0;
  let unreported = 0;
  /** Lines of this turn not yet handed to the sink (coalesce only). */
  let batch = '';
  const flush = (): void => {
    if (batch === '') return;
    const text = batch;
    batch = '';
    sink.write(text);
  };
  if (options.coalesce === true) process.on('exit', flush);
  const write =
    options.coalesce === true
      ? (text: string): void => {
          if (batch === '') setImmediate(flush);
          batch += text;
          // A turn that logs a lot (thousands of sockets closing at once) writes as it goes.
          if (batch.length >= MAX_COALESCED_LOG_CHARS) flush();
        }
      : (text: string): void => {
          sink.write(text);
        };
  const line = (level: LogLevel, event: string, fields?: LogFields): string => {
    const time = new Date().toISOString();
    return format === 'json' ? jsonLine(time, level, event, fields) : textLine(time, level, event, fields);
  };
  const emit = (level: LogLevel, event: string, fields?: LogFields): void => {
    // The unwritten bound counts this turn's batch too (at most MAX_COALESCED_LOG_CHARS).
    if ((sink.writableLength ?? 0) + batch.length > MAX_PENDING_LOG_BYTES) {
      dropped++;
      unreported++;
      return;
    }
    if (unreported > 0) {
      write(line('WARN', 'log_dropped', { count: unreported }));
      unreported = 0;
    }
    write(line(level, event, fields));
  };
  return {
    info: (event, fields) => emit('INFO', event, fields),
    warn: (event, fields) => emit('WARN', event, fields),
    error: (event, fields) => emit('ERROR', event, fields),
    get droppedLines() {
      return dropped;
    },
  };
}

/** A logger that drops everything (benchmarks, library use without logs). */
export const silentLogger: Logger = { info() {}, warn() {}, error() {} };

function textLine(time: string, level: LogLevel, event: string, fields?: LogFields): string {
  let line = `time=${time} level=${level} msg=${textValue(event)}`;
  if (fields) {
    for (const key of Object.keys(fields)) {
      const value = fields[key as LogKey];
      if (value === undefined || !LOG_KEYS.has(key)) continue;
      line += ` ${key}=${textValue(clip(String(value)))}`;
    }
  }
  return line + '\n';
}

function jsonLine(time: string, level: LogLevel, event: string, fields?: LogFields): string {
  const record: Record<string, LogValue> = { time, level, msg: event };
  if (fields) {
    for (const key of Object.keys(fields)) {
      const value = fields[key as LogKey];
      if (value === undefined || !LOG_KEYS.has(key)) continue;
      record[key] = typeof value === 'string' ? clip(value) : value;
    }
  }
  return JSON.stringify(record) + '\n';
}

// Quote like Go's slog text handler: empty values, spaces, '=', '"', and anything that is not a
// printable character are quoted, with control characters escaped (so a hostile device name cannot
// forge a second log line or a fake key).
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what must be quoted
const NEEDS_QUOTING = /[\s="\\\u0000-\u001f\u007f-\u009f\u2028\u2029\ufffd]/;

// JSON.stringify escapes only U+0000-U+001F; these also break lines or drive terminals.
const EXTRA_ESCAPES = /[\u007f-\u009f\u2028\u2029]/g;

function textValue(value: string): string {
  if (value.length === 0 || NEEDS_QUOTING.test(value)) {
    return JSON.stringify(value).replace(EXTRA_ESCAPES, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  }
  return value;
}

/** An error's text for a log line's `err`: its message, or the thrown value as a string. */
export function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
