// Checks of single flag values: integers, durations, the log format, the autocert domain and ACME
// directory. Pure; each returns the value or a reason that never needs the value's context.

import { formatDuration, parseDuration } from '../duration.js';
import type { LogFormat } from '../log.js';
import { isIPv4, isIPv6 } from 'node:net';

/** Upper bound for integer flags: far beyond any sane setting, and exact in every computation. */
export const MAX_INT_FLAG = 2_147_483_647;
/** Duration flags must lie in [MIN_DURATION_MS, MAX_DURATION_MS]. */
export const MIN_DURATION_MS = 1;
export const MAX_DURATION_MS = 24 * 60 * 60 * 1000;

export type Check<T> = { ok: true; value: T } | { ok: false; reason: string };

const INT_RE = /^[1-9][0-9]*$/;

export function checkPositiveInt(s: string): Check<number> {
  if (s === '0') return { ok: false, reason: 'must be greater than zero' };
  if (!INT_RE.test(s)) {
    if (/^0[0-9]+$/.test(s)) {
      return { ok: false, reason: 'leading zeros are not allowed (Go would read the value as octal)' };
    }
    return { ok: false, reason: 'not a decimal integer (digits only, no sign, exponent or spaces)' };
  }
  if (s.length > 10 || Number(s) > MAX_INT_FLAG) {
    return { ok: false, reason: `must be at most ${MAX_INT_FLAG}` };
  }
  return { ok: true, value: Number(s) };
}

export function checkDuration(s: string): Check<number> {
  const ms = parseDuration(s);
  if (ms === null) return { ok: false, reason: 'not a Go duration (examples: 250ms, 30s, 1m30s, 2h)' };
  if (ms <= 0) return { ok: false, reason: 'must be greater than zero' };
  if (ms < MIN_DURATION_MS) return { ok: false, reason: `must be at least ${formatDuration(MIN_DURATION_MS)}` };
  if (ms > MAX_DURATION_MS) return { ok: false, reason: `must be at most ${formatDuration(MAX_DURATION_MS)}` };
  return { ok: true, value: ms };
}

export function checkLogFormat(s: string): Check<LogFormat> {
  if (s === 'text' || s === 'json') return { ok: true, value: s };
  return { ok: false, reason: 'must be "text" or "json"' };
}

const DNS_LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
export const HOSTNAME_RE = new RegExp(`^${DNS_LABEL}(?:\\.${DNS_LABEL})*\\.?$`);

/**
 * --domain: a DNS name (letters, digits, hyphens; labels of 1-63 characters; at most 253 in all),
 * not an IP address; returned lowercase without a trailing dot. The ACME CA decides whether it
 * issues for the name (public CAs need a registered domain; a test CA may take `localhost`).
 */
export function checkDomain(s: string): Check<string> {
  if (s === '') return { ok: false, reason: 'must not be empty' };
  if (isIPv4(s) || isIPv6(s) || s.startsWith('['))
    return { ok: false, reason: 'must be a DNS name, not an IP address' };
  if (s.includes('*'))
    return { ok: false, reason: 'wildcard names are not supported (HTTP-01 and TLS-ALPN-01 cannot validate them)' };
  const name = s.toLowerCase().replace(/\.$/, '');
  if (name.length > 253 || !HOSTNAME_RE.test(name)) return { ok: false, reason: 'not a valid DNS name' };
  const labels = name.split('.');
  if (/^[0-9]+$/.test(labels[labels.length - 1]!))
    return { ok: false, reason: 'the last label must not be all digits' };
  return { ok: true, value: name };
}

/** --acme-directory: an absolute https:// URL without user info or fragment (RFC 8555 6.1). */
export function checkAcmeDirectory(s: string): boolean {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return false;
  }
  return (
    u.protocol === 'https:' &&
    u.hostname !== '' &&
    u.username === '' &&
    u.password === '' &&
    u.hash === '' &&
    !s.includes('#')
  );
}
