// The HTTP limits every listener of the relay applies: the public listeners (listeners.ts) and the
// loopback /metrics listener (telemetry/metrics-server.ts), held equal by both reading this file
// (docs/decisions.md, "HTTP timeouts" and "Maximum request header size: 64 KiB"). A leaf: it
// imports nothing, so telemetry/ may read it without reaching into the relay core.

/** Headers must be complete within this long (slow-loris bound; 408 after it). */
export const HEADER_READ_TIMEOUT_MS = 5_000;
/** The whole request (headers and body) of a plain HTTP request. */
export const REQUEST_TIMEOUT_MS = 60_000;
/** Idle keep-alive connections are closed after this long. */
export const IDLE_TIMEOUT_MS = 120_000;
/** Requests with larger headers get 431. */
export const MAX_HEADER_BYTES = 64 * 1024;
