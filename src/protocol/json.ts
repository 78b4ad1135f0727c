// Byte-level JSON scanner for the content-blind relay.
//
// The relay must never re-serialise a frame (JSON.parse + stringify would lose big-int precision,
// reorder keys and drop duplicate keys), so it only ever *scans* bytes: validate, find value spans,
// and — when Go's encoder would change the bytes — compact/HTML-escape them in one linear pass.
//
// Acceptance rules match Go's encoding/json scanner exactly:
//   - whitespace is only space, \t, \n, \r;
//   - literals true/false/null; numbers -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?;
//   - strings: no raw byte < 0x20; escapes \" \\ \/ \b \f \n \r \t \uXXXX (lone surrogates are
//     syntactically fine); bytes >= 0x80 pass through (UTF-8 validity is checked separately);
//   - nesting deeper than MAX_JSON_DEPTH is invalid.
//
// The scanner is iterative with a preallocated module-level container stack, so a 256 KiB message of
// `[[[[…` cannot overflow the JS stack and the validation path allocates nothing. It is not
// re-entrant, which is fine: every function here runs to completion synchronously.
//
// Long runs of plain string bytes go to a WebAssembly SIMD loop (simd-scan.ts) when the caller
// mirrored the buffer first ({@link mirrorForScan}); the accepted bytes and every index returned
// are the same either way.

import { simdScanner } from './simd-scan.js';

/** Go's scanner limit (encoding/json maxNestingDepth): depth 10000 is accepted, 10001 is not. */
export const MAX_JSON_DEPTH = 10000;

/** Optional out-parameter of {@link scanValue}: what Go's compacting, HTML-escaping encoder would change. */
export interface CompactStats {
  /** Bytes of insignificant whitespace inside the value (outside strings) that compaction removes. */
  spaces: number;
  /** Bytes HTML escaping adds inside strings: +5 for each < > &, +3 for each U+2028 / U+2029. */
  htmlExtra: number;
}

const OBJ = 1;
const ARR = 2;
/** Container kinds of the currently open levels, indexed by depth (1-based). */
const stack = new Uint8Array(MAX_JSON_DEPTH + 2);

// Byte classes inside a string. Anything non-zero needs a closer look; 0 bytes are copied through.
const S_PLAIN = 0;
const S_QUOTE = 1;
const S_BACKSLASH = 2;
const S_CONTROL = 3; // raw byte < 0x20: invalid inside a string
const S_HTML = 4; // < > &: Go's encoder rewrites them as \u003c \u003e \u0026
const S_E2 = 5; // possible first byte of U+2028 / U+2029 (E2 80 A8 / E2 80 A9)
const STRING_CLASS = new Uint8Array(256);
for (let c = 0; c < 0x20; c++) STRING_CLASS[c] = S_CONTROL;
STRING_CLASS[0x22] = S_QUOTE;
STRING_CLASS[0x5c] = S_BACKSLASH;
STRING_CLASS[0x3c] = S_HTML;
STRING_CLASS[0x3e] = S_HTML;
STRING_CLASS[0x26] = S_HTML;
STRING_CLASS[0xe2] = S_E2;

/** 1 for hex digits. */
const HEX = new Uint8Array(256);
for (let c = 0x30; c <= 0x39; c++) HEX[c] = 1;
for (let c = 0x41; c <= 0x46; c++) HEX[c] = 1;
for (let c = 0x61; c <= 0x66; c++) HEX[c] = 1;

/** 1 for the characters allowed after a backslash other than `u`. */
const SHORT_ESCAPE = new Uint8Array(256);
for (const ch of '"\\/bfnrt') SHORT_ESCAPE[ch.charCodeAt(0)] = 1;

/** Buffers shorter than this are scanned in JavaScript only: copying them into the SIMD module's
 * memory costs more than it saves. */
export const SIMD_MIN_BYTES = 1024;
/** Plain bytes (in blocks of 4) a string scan takes in JavaScript before it hands the rest of a
 * long string to the SIMD loop: short strings never pay for the call. */
const JS_BLOCKS_BEFORE_SIMD = 8;

/** The buffer whose bytes are in the SIMD module's memory right now, or null. */
let mirrored: Uint8Array | null = null;

/**
 * Lets the string scans of `buf` use the SIMD loop until {@link endMirror}: copies `buf` into the
 * module's memory when it is long enough to pay off. The caller must not modify `buf` before
 * calling endMirror (the copy would go stale), and must call it on every path.
 */
export function mirrorForScan(buf: Uint8Array): void {
  mirrored = buf.length >= SIMD_MIN_BYTES && simdScanner !== null && simdScanner.load(buf) ? buf : null;
}

export function endMirror(): void {
  mirrored = null;
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** Index of the first non-whitespace byte at or after `i` (or `end`). */
export function skipWhitespace(buf: Uint8Array, i: number, end: number = buf.length): number {
  while (i < end && isSpace(buf[i]!)) i++;
  return i;
}

/**
 * Scans one string whose opening quote is at `i`. Returns the index just past the closing quote,
 * or -1 when the string is invalid or unterminated. Adds HTML-escape growth to `stats` if given.
 */
export function scanString(buf: Uint8Array, i: number, end: number = buf.length, stats?: CompactStats): number {
  if (i >= end || buf[i] !== 0x22) return -1;
  i++;
  let html = 0;
  const simd = buf === mirrored ? simdScanner : null;
  for (;;) {
    // Most string bytes are plain: skip them four at a time (the hot loop for large frames), and
    // once a string proves long, sixteen at a time in the SIMD loop. That loop stops at a byte
    // that needs a look or before the last partial block, which this loop then finishes.
    let blocks = 0;
    while (
      i + 4 <= end &&
      (STRING_CLASS[buf[i]!]! |
        STRING_CLASS[buf[i + 1]!]! |
        STRING_CLASS[buf[i + 2]!]! |
        STRING_CLASS[buf[i + 3]!]!) ===
        S_PLAIN
    ) {
      i += 4;
      if (++blocks === JS_BLOCKS_BEFORE_SIMD && simd !== null) {
        i = simd.skip(i, end);
        blocks = 0;
      }
    }
    if (i >= end) return -1;
    const c = buf[i]!;
    const cls = STRING_CLASS[c]!;
    if (cls === S_PLAIN) {
      i++;
      continue;
    }
    if (cls === S_QUOTE) {
      if (stats !== undefined) stats.htmlExtra += html;
      return i + 1;
    }
    if (cls === S_BACKSLASH) {
      if (i + 1 >= end) return -1;
      const e = buf[i + 1]!;
      if (SHORT_ESCAPE[e] === 1) {
        i += 2;
      } else if (e === 0x75 /* u */) {
        if (i + 5 >= end) return -1; // need the 4 hex digits
        if ((HEX[buf[i + 2]!]! & HEX[buf[i + 3]!]! & HEX[buf[i + 4]!]! & HEX[buf[i + 5]!]!) === 0) return -1;
        i += 6;
      } else {
        return -1;
      }
      continue;
    }
    if (cls === S_CONTROL) return -1;
    if (cls === S_HTML) {
      html += 5; // 1 byte -> \u00XX (6 bytes)
      i++;
      continue;
    }
    // S_E2: only E2 80 A8 / E2 80 A9 are escaped (3 bytes -> \u202X, 6 bytes).
    if (i + 2 < end && buf[i + 1] === 0x80 && (buf[i + 2]! & 0xfe) === 0xa8) {
      html += 3;
      i += 3;
    } else {
      i++;
    }
  }
}

/** Index just past a number literal starting at `i`, or -1. */
function scanNumber(buf: Uint8Array, i: number, end: number): number {
  if (buf[i] === 0x2d /* - */) i++;
  if (i >= end) return -1;
  const c = buf[i]!;
  if (c === 0x30) {
    i++;
  } else if (c >= 0x31 && c <= 0x39) {
    i = skipDigits(buf, i + 1, end);
  } else {
    return -1;
  }
  if (i < end && buf[i] === 0x2e /* . */) {
    i++;
    if (i >= end || !isDigit(buf[i]!)) return -1;
    i = skipDigits(buf, i + 1, end);
  }
  if (i < end && (buf[i] === 0x65 || buf[i] === 0x45) /* e E */) {
    i++;
    if (i < end && (buf[i] === 0x2b || buf[i] === 0x2d)) i++;
    if (i >= end || !isDigit(buf[i]!)) return -1;
    i = skipDigits(buf, i + 1, end);
  }
  return i;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** Index of the first non-digit at or after `i` (or `end`). */
function skipDigits(buf: Uint8Array, i: number, end: number): number {
  while (i < end && isDigit(buf[i]!)) i++;
  return i;
}

/** Index just past `lit` if the bytes at `i` spell it, else -1. `lit` is one of true/false/null. */
function scanLiteral(buf: Uint8Array, i: number, end: number, lit: Uint8Array): number {
  if (i + lit.length > end) return -1;
  for (let k = 0; k < lit.length; k++) if (buf[i + k] !== lit[k]) return -1;
  return i + lit.length;
}
const TRUE = new Uint8Array([0x74, 0x72, 0x75, 0x65]);
const FALSE = new Uint8Array([0x66, 0x61, 0x6c, 0x73, 0x65]);
const NULL = new Uint8Array([0x6e, 0x75, 0x6c, 0x6c]);

/** True when bytes [start, end) are exactly the literal `null`. */
export function isNullLiteral(buf: Uint8Array, start: number, end: number): boolean {
  return (
    end - start === 4 &&
    buf[start] === 0x6e &&
    buf[start + 1] === 0x75 &&
    buf[start + 2] === 0x6c &&
    buf[start + 3] === 0x6c
  );
}

/**
 * Scans exactly one JSON value, after skipping leading whitespace at `start`.
 * Returns the index just past the value (trailing whitespace is NOT consumed), or -1 when the bytes
 * do not begin with a valid value within `end` or nest deeper than `maxDepth`.
 *
 * `maxDepth` lets a caller that is already inside a container (e.g. the envelope object, depth 1)
 * keep Go's whole-document limit: pass MAX_JSON_DEPTH - 1 for a member value.
 *
 * When `stats` is given it is overwritten with what compaction/HTML escaping would change inside
 * the value; pass a reused object so the call stays allocation-free.
 */
export function scanValue(
  buf: Uint8Array,
  start: number,
  end: number = buf.length,
  maxDepth: number = MAX_JSON_DEPTH,
  stats?: CompactStats,
): number {
  let i = skipWhitespace(buf, start, end);
  let depth = 0;
  let spaces = 0;
  if (stats !== undefined) {
    stats.spaces = 0;
    stats.htmlExtra = 0;
  }
  for (;;) {
    // ---- expecting a value at i ----
    if (i >= end) return -1;
    let c = buf[i]!;
    let j: number;
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (++depth > maxDepth) return -1;
      const isObj = c === 0x7b;
      stack[depth] = isObj ? OBJ : ARR;
      j = skipWhitespace(buf, i + 1, end);
      spaces += j - i - 1;
      i = j;
      if (i < end && buf[i] === (isObj ? 0x7d : 0x5d)) {
        // empty container: closes immediately, fall through to "after a value"
        i++;
        depth--;
      } else if (isObj) {
        i = scanKeyColon(buf, i, end, stats);
        if (i < 0) return -1;
        j = skipWhitespace(buf, i, end);
        spaces += j - i;
        i = j;
        continue;
      } else {
        continue;
      }
    } else if (c === 0x22) {
      i = scanString(buf, i, end, stats);
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      i = scanNumber(buf, i, end);
    } else if (c === 0x74) {
      i = scanLiteral(buf, i, end, TRUE);
    } else if (c === 0x66) {
      i = scanLiteral(buf, i, end, FALSE);
    } else if (c === 0x6e) {
      i = scanLiteral(buf, i, end, NULL);
    } else {
      return -1;
    }
    if (i < 0) return -1;

    // ---- after a complete value: close containers or move to the next element ----
    for (;;) {
      if (depth === 0) {
        if (stats !== undefined) stats.spaces += spaces; // scanKeyColon counted key-colon gaps already
        return i;
      }
      j = skipWhitespace(buf, i, end);
      spaces += j - i;
      i = j;
      if (i >= end) return -1;
      c = buf[i]!;
      const kind = stack[depth];
      if (c === 0x2c /* , */) {
        j = skipWhitespace(buf, i + 1, end);
        spaces += j - i - 1;
        i = j;
        if (kind === OBJ) {
          i = scanKeyColon(buf, i, end, stats);
          if (i < 0) return -1;
          j = skipWhitespace(buf, i, end);
          spaces += j - i;
          i = j;
        }
        break; // a value follows
      }
      if (c === (kind === OBJ ? 0x7d : 0x5d)) {
        i++;
        depth--;
        continue;
      }
      return -1;
    }
  }
}

/** Scans `"key" ws :` at i (i at the key's quote). Returns the index past the colon, or -1. */
function scanKeyColon(buf: Uint8Array, i: number, end: number, stats: CompactStats | undefined): number {
  i = scanString(buf, i, end, stats);
  if (i < 0) return -1;
  const j = skipWhitespace(buf, i, end);
  if (stats !== undefined) stats.spaces += j - i;
  if (j >= end || buf[j] !== 0x3a /* : */) return -1;
  return j + 1;
}

const HEX_LOWER = new Uint8Array([...'0123456789abcdef'].map((ch) => ch.charCodeAt(0)));

/**
 * Writes the value in src[start, end) — which must already have passed {@link scanValue} — into
 * `dst` at `off` the way Go's json.Marshal emits a json.RawMessage (appendCompact with escapeHTML):
 * whitespace outside strings dropped; inside strings < > & become \u003c \u003e \u0026 and
 * U+2028 / U+2029 become \u2028 / \u2029. Every other byte is copied unchanged.
 * `dst` must have room for (end - start) - stats.spaces + stats.htmlExtra bytes. Returns the new offset.
 */
export function writeCompact(src: Uint8Array, start: number, end: number, dst: Uint8Array, off: number): number {
  let inString = false;
  let i = start;
  while (i < end) {
    const c = src[i]!;
    if (!inString) {
      if (!isSpace(c)) {
        dst[off++] = c;
        if (c === 0x22) inString = true;
      }
      i++;
      continue;
    }
    const cls = STRING_CLASS[c]!;
    if (cls === S_PLAIN) {
      dst[off++] = c;
      i++;
    } else if (cls === S_QUOTE) {
      dst[off++] = c;
      inString = false;
      i++;
    } else if (cls === S_BACKSLASH) {
      // Copy the escape's first two bytes; for \uXXXX the hex digits are plain bytes.
      dst[off++] = c;
      dst[off++] = src[i + 1]!;
      i += 2;
    } else if (cls === S_HTML) {
      dst[off++] = 0x5c;
      dst[off++] = 0x75;
      dst[off++] = 0x30;
      dst[off++] = 0x30;
      dst[off++] = HEX_LOWER[c >> 4]!;
      dst[off++] = HEX_LOWER[c & 0xf]!;
      i++;
    } else if (cls === S_E2 && i + 2 < end && src[i + 1] === 0x80 && (src[i + 2]! & 0xfe) === 0xa8) {
      dst[off++] = 0x5c;
      dst[off++] = 0x75;
      dst[off++] = 0x32;
      dst[off++] = 0x30;
      dst[off++] = 0x32;
      dst[off++] = HEX_LOWER[src[i + 2]! & 0xf]!; // A8 -> 8, A9 -> 9
      i += 3;
    } else {
      dst[off++] = c; // lone E2 (or unreachable control byte after validation)
      i++;
    }
  }
  return off;
}

function hexVal(c: number): number {
  if (c <= 0x39) return c - 0x30;
  return (c | 0x20) - 0x61 + 10;
}

function hex4(buf: Uint8Array, i: number): number {
  return (hexVal(buf[i]!) << 12) | (hexVal(buf[i + 1]!) << 8) | (hexVal(buf[i + 2]!) << 4) | hexVal(buf[i + 3]!);
}

/**
 * Decodes a string token that has already passed {@link scanString}: `start` is the opening quote,
 * `end` the index just past the closing quote. Matches Go's unquote: a \uD8xx\uDCxx pair becomes one
 * code point, any other surrogate escape becomes U+FFFD. Raw bytes are decoded as UTF-8 (callers
 * pass UTF-8-validated input; invalid bytes become U+FFFD as in Go, though Node may merge a
 * truncated sequence into one U+FFFD where Go emits one per byte).
 * Fast path: no backslash → one toString (latin1 when all ASCII).
 */
export function decodeString(buf: Buffer, start: number, end: number): string {
  const s = start + 1;
  const e = end - 1;
  let ascii = true;
  let i = s;
  for (; i < e; i++) {
    const c = buf[i]!;
    if (c === 0x5c) break;
    if (c >= 0x80) ascii = false;
  }
  if (i === e) return buf.toString(ascii ? 'latin1' : 'utf8', s, e);

  let out = '';
  let run = s; // start of the pending run of raw bytes
  while (i < e) {
    if (buf[i] !== 0x5c) {
      i++;
      continue;
    }
    if (run < i) out += buf.toString('utf8', run, i);
    const esc = buf[i + 1]!;
    if (esc !== 0x75) {
      switch (esc) {
        case 0x62:
          out += '\b';
          break;
        case 0x66:
          out += '\f';
          break;
        case 0x6e:
          out += '\n';
          break;
        case 0x72:
          out += '\r';
          break;
        case 0x74:
          out += '\t';
          break;
        default:
          out += String.fromCharCode(esc); // " \ /
      }
      i += 2;
    } else {
      const cu = hex4(buf, i + 2);
      i += 6;
      if (cu >= 0xd800 && cu < 0xe000) {
        // Go: only a high surrogate immediately followed by an escaped low surrogate forms a pair;
        // otherwise this escape alone becomes U+FFFD and the next escape is decoded on its own.
        if (cu < 0xdc00 && i + 6 <= e && buf[i] === 0x5c && buf[i + 1] === 0x75) {
          const lo = hex4(buf, i + 2);
          if (lo >= 0xdc00 && lo < 0xe000) {
            out += String.fromCharCode(cu, lo);
            i += 6;
            run = i;
            continue;
          }
        }
        out += '\ufffd';
      } else {
        out += String.fromCharCode(cu);
      }
    }
    run = i;
  }
  if (run < e) out += buf.toString('utf8', run, e);
  return out;
}
