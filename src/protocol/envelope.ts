// Routing envelopes between phones and the binary, byte-compatible with the Go reference relay.
//
// Phone -> binary: {"conn_id":"…","frame":<payload>} as Go's json.Marshal of
//   struct{ ConnID string `json:"conn_id"`; Frame json.RawMessage `json:"frame"` }.
// Binary -> phone: Go's json.Unmarshal into
//   struct{ ConnID string; Frame json.RawMessage; CloseCode uint16; PushWake json.RawMessage }.
//
// The relay is content-blind: the inner frame is never parsed into JS values and re-serialised
// (that would lose big-int precision, reorder keys and drop duplicates); it is validated and copied
// as bytes, with only the changes Go's encoder itself makes (compaction, HTML escaping).

import { Buffer, isUtf8 } from 'node:buffer';
import {
  type CompactStats,
  MAX_JSON_DEPTH,
  decodeString,
  endMirror,
  isNullLiteral,
  mirrorForScan,
  scanString,
  scanValue,
  skipWhitespace,
  writeCompact,
} from './json.js';

// ---------------------------------------------------------------------------------------------
// Encoding (relay -> binary)
// ---------------------------------------------------------------------------------------------

/**
 * A JS string as a JSON string literal the way Go's encoder (Go >= 1.22, escapeHTML on) writes it:
 * `"` `\` as \" \\; \b \f \n \r \t as short escapes; other bytes < 0x20 as \u00xx (lowercase);
 * < > & as \u003c \u003e \u0026; U+2028 / U+2029 as \u2028 / \u2029; everything else literal.
 * A lone UTF-16 surrogate becomes U+FFFD when the result is UTF-8 encoded, which is what Go holds
 * after decoding such a string.
 */
function goJsonString(s: string): string {
  let out = '"';
  let run = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let esc: string;
    if (c < 0x80) {
      if (c >= 0x20 && c !== 0x22 && c !== 0x5c && c !== 0x3c && c !== 0x3e && c !== 0x26) continue;
      switch (c) {
        case 0x22:
          esc = '\\"';
          break;
        case 0x5c:
          esc = '\\\\';
          break;
        case 0x08:
          esc = '\\b';
          break;
        case 0x0c:
          esc = '\\f';
          break;
        case 0x0a:
          esc = '\\n';
          break;
        case 0x0d:
          esc = '\\r';
          break;
        case 0x09:
          esc = '\\t';
          break;
        default:
          esc = '\\u00' + (c < 0x10 ? '0' : '') + c.toString(16);
      }
    } else if (c === 0x2028 || c === 0x2029) {
      esc = c === 0x2028 ? '\\u2028' : '\\u2029';
    } else {
      continue;
    }
    out += s.slice(run, i) + esc;
    run = i + 1;
  }
  return out + s.slice(run) + '"';
}

/** `{"conn_id":<conn_id as JSON string>,"frame":` as bytes; computed once per phone. */
export function connIdPrefix(connId: string): Buffer {
  return Buffer.from('{"conn_id":' + goJsonString(connId) + ',"frame":', 'utf8');
}

/**
 * `{"conn_id":"client-…","close_code":<n>}` — exactly these two keys in this order, never a frame key.
 * Throws RangeError for a non-integer close code (a caller bug: it would otherwise emit invalid JSON).
 */
export function closeNotice(connId: string, closeCode: number): Buffer {
  if (!Number.isSafeInteger(closeCode)) throw new RangeError('closeNotice: close code must be an integer');
  return Buffer.from('{"conn_id":' + goJsonString(connId) + ',"close_code":' + String(closeCode) + '}', 'utf8');
}

/** Reused out-parameter for scanValue; the wrapping functions are synchronous, so sharing is safe. */
const wrapStats: CompactStats = { spaces: 0, htmlExtra: 0 };

/** The byte that closes every phone envelope. Shared and never written to: a send may hold it. */
export const ENVELOPE_SUFFIX: Buffer = Buffer.from('}');

/** {@link phoneEnvelope}'s answer when the envelope is exactly `prefix` + the payload as received +
 * {@link ENVELOPE_SUFFIX}: the caller may send those three pieces without joining them. */
export const PAYLOAD_AS_IS = 1;

/**
 * The envelope for one phone message, or PAYLOAD_AS_IS when the payload needs no change (already
 * compact, nothing to HTML-escape: the common case), or null when it is not exactly one valid JSON
 * value (see {@link wrapPhoneFrame}). One scan validates and measures; a payload that Go's encoder
 * would change is compacted/escaped into a new buffer.
 */
export function phoneEnvelope(
  prefix: Buffer,
  payload: Buffer,
  isBinaryOpcode: boolean,
): Buffer | typeof PAYLOAD_AS_IS | null {
  if (isBinaryOpcode && !isUtf8(payload)) return null;
  const n = payload.length;
  const vs = skipWhitespace(payload, 0, n);
  mirrorForScan(payload);
  let ve: number;
  try {
    ve = scanValue(payload, vs, n, MAX_JSON_DEPTH, wrapStats);
  } finally {
    endMirror();
  }
  if (ve < 0 || skipWhitespace(payload, ve, n) !== n) return null;
  if (vs === 0 && ve === n && wrapStats.spaces === 0 && wrapStats.htmlExtra === 0) return PAYLOAD_AS_IS;
  const p = prefix.length;
  const out = Buffer.allocUnsafe(p + (ve - vs) - wrapStats.spaces + wrapStats.htmlExtra + 1);
  prefix.copy(out, 0);
  const off = writeCompact(payload, vs, ve, out, p);
  out[off] = 0x7d;
  return out;
}

/** `prefix` + `payload` + `}` in one new buffer: the envelope of a payload sent as is. */
export function joinEnvelope(prefix: Buffer, payload: Buffer): Buffer {
  const p = prefix.length;
  const n = payload.length;
  const out = Buffer.allocUnsafe(p + n + 1);
  prefix.copy(out, 0);
  payload.copy(out, p);
  out[p + n] = 0x7d; // }
  return out;
}

/**
 * Wrap one phone message for the binary: `{"conn_id":"…","frame":<payload>}`.
 * Returns null when the payload is not exactly one valid JSON value (empty, invalid syntax, trailing
 * garbage, depth > 10000) or, when `isBinaryOpcode` is true, not valid UTF-8 (text frames were
 * already UTF-8-validated by the ws library).
 *
 * The frame bytes are those Go's json.Marshal emits for a json.RawMessage: compacted, and inside
 * strings < > & U+2028 U+2029 escaped. Nothing else changes (escapes, number spelling, key order,
 * duplicate keys). An already-compact payload is copied as is.
 */
export function wrapPhoneFrame(prefix: Buffer, payload: Buffer, isBinaryOpcode: boolean): Buffer | null {
  const envelope = phoneEnvelope(prefix, payload, isBinaryOpcode);
  return envelope === PAYLOAD_AS_IS ? joinEnvelope(prefix, payload) : envelope;
}

// ---------------------------------------------------------------------------------------------
// Decoding (binary -> relay)
// ---------------------------------------------------------------------------------------------

export type BinaryEnvelope =
  | { kind: 'malformed'; err: string } // err: a FIXED sentinel text, never any payload byte
  | { kind: 'wake'; pushWake: Buffer } // raw bytes of the push_wake value (subarray of input)
  | { kind: 'route'; connId: string; frame: Buffer | null; closeCode: number };

// Fixed sentinels, shared (frozen) so the malformed path allocates nothing.
const malformed = (err: string): BinaryEnvelope => Object.freeze({ kind: 'malformed' as const, err });
const MALFORMED = malformed('malformed envelope');
const NOT_UTF8 = malformed('envelope is not valid UTF-8');
const NOT_OBJECT = malformed('envelope is not a JSON object');
const CONN_ID_TYPE = malformed('conn_id is not a string');
const CLOSE_CODE_TYPE = malformed('close_code is not a uint16');
const MISSING_CONN_ID = malformed('missing conn_id');
const MISSING_FRAME = malformed('missing frame');

const K_OTHER = 0;
const K_CONN_ID = 1;
const K_FRAME = 2;
const K_CLOSE_CODE = 3;
const K_PUSH_WAKE = 4;
/** Go-folded (upper-case) field names, indexed by K_*. */
const FOLDED_NAMES = ['', 'CONN_ID', 'FRAME', 'CLOSE_CODE', 'PUSH_WAKE'];

/** Field whose folded name has this length (all four lengths differ), by length. */
function fieldByLength(len: number): number {
  switch (len) {
    case 7:
      return K_CONN_ID;
    case 5:
      return K_FRAME;
    case 10:
      return K_CLOSE_CODE;
    case 9:
      return K_PUSH_WAKE;
    default:
      return K_OTHER;
  }
}

/**
 * Which field a key token (quote to quote, already scanned) names, matching Go's case-insensitive
 * field lookup: compare the UNESCAPED key after folding each character to the smallest member of
 * its Unicode simple-fold orbit. For our ASCII names that is ASCII case folding plus the only two
 * non-ASCII runes whose orbit reaches an ASCII letter: U+017F (ſ) ~ s and U+212A (Kelvin) ~ k.
 * (U+0130/U+0131, the Turkish i's, are their own orbits in Go, so they never match i.)
 */
function matchKey(data: Buffer, ks: number, ke: number): number {
  const s = ks + 1;
  const e = ke - 1;
  let plain = true;
  for (let k = s; k < e; k++) {
    const c = data[k]!;
    if (c === 0x5c || c >= 0x80) {
      plain = false;
      break;
    }
  }
  if (plain) {
    // Fast path: raw ASCII bytes, no escapes.
    const f = fieldByLength(e - s);
    if (f === K_OTHER) return K_OTHER;
    const name = FOLDED_NAMES[f]!;
    for (let k = 0; k < name.length; k++) {
      let c = data[s + k]!;
      if (c >= 0x61 && c <= 0x7a) c -= 0x20;
      if (c !== name.charCodeAt(k)) return K_OTHER;
    }
    return f;
  }
  // Slow path: escapes or non-ASCII. ſ and K are single UTF-16 units, so lengths line up.
  const key = decodeString(data, ks, ke);
  const f = fieldByLength(key.length);
  if (f === K_OTHER) return K_OTHER;
  const name = FOLDED_NAMES[f]!;
  for (let k = 0; k < name.length; k++) {
    let c = key.charCodeAt(k);
    if (c >= 0x61 && c <= 0x7a) c -= 0x20;
    else if (c === 0x017f)
      c = 0x53; // ſ -> S
    else if (c === 0x212a) c = 0x4b; // Kelvin sign -> K
    if (c !== name.charCodeAt(k)) return K_OTHER;
  }
  return f;
}

/**
 * Go's ParseUint(literal, 10, 64) + uint16 overflow check on an already-valid number token:
 * returns 0..65535, or -1 when Go would report an UnmarshalTypeError (sign, fraction, exponent,
 * > 65535).
 */
function parseUint16(data: Buffer, s: number, e: number): number {
  if (e - s > 5) return -1; // no leading zeros in valid JSON, so 6+ digits is > 65535 (or not an integer)
  let v = 0;
  for (let k = s; k < e; k++) {
    const c = data[k]!;
    if (c < 0x30 || c > 0x39) return -1; // '-', '.', 'e', 'E', '+'
    v = v * 10 + (c - 0x30);
  }
  return v <= 0xffff ? v : -1;
}

/**
 * Decode one binary->relay envelope with Go's encoding/json semantics (see the file header).
 * Never throws. Malformed results carry a fixed sentinel, never payload bytes.
 */
export function decodeBinaryEnvelope(data: Buffer, isBinaryOpcode: boolean): BinaryEnvelope {
  if (isBinaryOpcode && !isUtf8(data)) return NOT_UTF8;
  mirrorForScan(data);
  try {
    return decodeMirrored(data);
  } finally {
    endMirror();
  }
}

function decodeMirrored(data: Buffer): BinaryEnvelope {
  const n = data.length;
  let i = skipWhitespace(data, 0, n);
  if (i >= n) return MALFORMED;

  if (data[i] !== 0x7b /* { */) {
    const e = scanValue(data, i, n);
    if (e < 0 || skipWhitespace(data, e, n) !== n) return MALFORMED;
    // Go: null into a struct is a no-op, so everything stays empty -> "missing conn_id".
    // Any other non-object is an UnmarshalTypeError.
    return isNullLiteral(data, i, e) ? MISSING_CONN_ID : NOT_OBJECT;
  }

  let connS = -1; // span of the last conn_id string token (decoded only once, at the end)
  let connE = -1;
  let frameS = -1; // span of the last non-null frame value; -1 = absent / null
  let frameE = -1;
  let wakeS = -1;
  let wakeE = -1;
  let closeCode = 0;
  // Go keeps decoding after a type error and reports it only if the syntax is valid, so a type
  // error is remembered and syntax errors later in the message still take precedence.
  let typeErr: BinaryEnvelope | null = null;

  i = skipWhitespace(data, i + 1, n);
  if (i < n && data[i] === 0x7d /* } */) {
    i++;
  } else {
    for (;;) {
      const ks = i;
      const ke = scanString(data, ks, n);
      if (ke < 0) return MALFORMED;
      i = skipWhitespace(data, ke, n);
      if (i >= n || data[i] !== 0x3a /* : */) return MALFORMED;
      const vs = skipWhitespace(data, i + 1, n);
      // The envelope object itself is nesting level 1 of Go's 10000.
      const ve = scanValue(data, vs, n, MAX_JSON_DEPTH - 1);
      if (ve < 0) return MALFORMED;
      const first = data[vs]!;

      switch (matchKey(data, ks, ke)) {
        case K_CONN_ID:
          // Go: a later null leaves a string field unchanged; non-strings are type errors.
          if (first === 0x22) {
            connS = vs;
            connE = ve;
          } else if (first !== 0x6e /* null */) {
            typeErr ??= CONN_ID_TYPE;
          }
          break;
        case K_CLOSE_CODE:
          if (first !== 0x6e /* null leaves it unchanged */) {
            const v = first === 0x2d || (first >= 0x30 && first <= 0x39) ? parseUint16(data, vs, ve) : -1;
            if (v < 0) typeErr ??= CLOSE_CODE_TYPE;
            else closeCode = v;
          }
          break;
        case K_FRAME:
          // RawMessage: a later null overwrites (with the bytes `null`, which means "no frame").
          if (first === 0x6e) frameS = frameE = -1;
          else {
            frameS = vs;
            frameE = ve;
          }
          break;
        case K_PUSH_WAKE:
          if (first === 0x6e) wakeS = wakeE = -1;
          else {
            wakeS = vs;
            wakeE = ve;
          }
          break;
        default:
          break; // unknown key: ignored, but its value was validated above
      }

      i = skipWhitespace(data, ve, n);
      if (i >= n) return MALFORMED;
      const c = data[i];
      if (c === 0x2c /* , */) {
        i = skipWhitespace(data, i + 1, n);
        continue;
      }
      if (c === 0x7d /* } */) {
        i++;
        break;
      }
      return MALFORMED;
    }
  }
  if (skipWhitespace(data, i, n) !== n) return MALFORMED; // trailing garbage
  if (typeErr !== null) return typeErr;

  const connId = connS >= 0 ? decodeString(data, connS, connE) : '';
  if (connId === '') {
    return wakeS >= 0 ? { kind: 'wake', pushWake: data.subarray(wakeS, wakeE) } : MISSING_CONN_ID;
  }
  const frame = frameS >= 0 ? data.subarray(frameS, frameE) : null;
  if (closeCode === 0 && frame === null) return MISSING_FRAME;
  return { kind: 'route', connId, frame, closeCode };
}
