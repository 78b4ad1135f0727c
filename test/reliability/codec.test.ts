// Reliability: property-based fuzzing of the envelope codec with HOSTILE input (issue #5), then the
// same properties end to end through a real relay. test/protocol/envelope.test.ts and test/protocol/json.test.ts
// cover the grammar, the Go-semantics model on shallow values and random bytes; this file adds
// what a hostile peer sends: nesting at and past Go's 10000 limit, numbers hundreds of digits long,
// duplicate and Unicode-case-folded keys, lone and reversed surrogate escapes, broken escapes,
// wrong types, close codes out of range, mutated and truncated envelopes, invalid UTF-8, and
// 256 KiB inputs built to hit slow paths. Oracles are independent of src/protocol/json.ts.

import { isUtf8 } from 'node:buffer';
import fc from 'fast-check';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  connIdPrefix,
  decodeBinaryEnvelope,
  wrapPhoneFrame,
  type BinaryEnvelope,
} from '../../src/protocol/envelope.js';
import { B2P, figure, goCompact, jsonEqual, P2B } from '../helpers/reliability.js';
import { connectBinary, phoneHeaders, startRelay, type TestClient, type TestRelay } from '../helpers/relay.js';
import { waitFor, withTimeout } from '../helpers/wait.js';

const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');

/** String.prototype.toWellFormed (ES2024): every lone surrogate becomes U+FFFD, as Go decodes them. */
function wellFormed(s: string): string {
  return s.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
}

// ---------------------------------------------------------------------------------------------
// Hostile JSON value texts, each with what it is (for the oracle)

type Kind = 'string' | 'number' | 'null' | 'bool' | 'array' | 'object';
interface Val {
  text: string;
  kind: Kind;
  /** Nesting depth of the value itself (scalars 0). */
  depth: number;
}

const WS = fc.constantFrom('', '', ' ', '\n', '\t', '\r\n  ', '    ');

const digits = (min: number, max: number): fc.Arbitrary<string> =>
  fc.array(fc.constantFrom(...'0123456789'), { minLength: min, maxLength: max }).map((a) => a.join(''));

/** Numbers as spelled by a hostile peer: up to 400 digits, long fractions, exponents past double range. */
const numberText: fc.Arbitrary<string> = fc
  .tuple(
    fc.boolean(),
    fc.oneof(
      fc.constant('0'),
      fc.tuple(fc.constantFrom(...'123456789'), digits(0, 40)).map(([a, b]) => a + b),
      fc.tuple(fc.constantFrom(...'123456789'), digits(300, 400)).map(([a, b]) => a + b),
    ),
    fc.option(digits(1, 30), { nil: undefined }),
    fc.option(
      fc.tuple(
        fc.constantFrom('e', 'E'),
        fc.constantFrom('', '+', '-'),
        fc.oneof(digits(1, 3), fc.constantFrom('999', '400', '0000')),
      ),
      { nil: undefined },
    ),
  )
  .map(
    ([neg, int, frac, exp]) =>
      (neg ? '-' : '') + int + (frac !== undefined ? '.' + frac : '') + (exp !== undefined ? exp.join('') : ''),
  );

/** String bodies with every escape, lone/reversed surrogate escapes, HTML-sensitive and non-ASCII characters. */
const STRING_PIECES = [
  'a',
  'Z',
  ' ',
  'conn_id',
  'frame',
  '<',
  '>',
  '&',
  '\u2028',
  '\u2029',
  '€',
  'é',
  '𝄞',
  '日本',
  '\u00a0',
  '\u007f',
  '\\"',
  '\\\\',
  '\\/',
  '\\b',
  '\\f',
  '\\n',
  '\\r',
  '\\t',
  '\\u0000',
  '\\u001f',
  '\\u0041',
  '\\u00e9',
  '\\uFFFF',
  '\\ud800',
  '\\udc00',
  '\\udbff\\udfff',
  '\\ud83d\\ude00',
  '\\udc00\\ud800',
  '\\uD800\\uDC00',
  '\\u2028',
  '\\u003c',
];
const stringText: fc.Arbitrary<string> = fc
  .array(fc.constantFrom(...STRING_PIECES), { maxLength: 12 })
  .map((a) => '"' + a.join('') + '"');

const scalar: fc.Arbitrary<Val> = fc.oneof(
  stringText.map((text) => ({ text, kind: 'string' as const, depth: 0 })),
  numberText.map((text) => ({ text, kind: 'number' as const, depth: 0 })),
  fc.constantFrom('true', 'false').map((text) => ({ text, kind: 'bool' as const, depth: 0 })),
  fc.constant({ text: 'null', kind: 'null' as const, depth: 0 }),
);

/** Keys inside frames: duplicates and case variants on purpose. */
const innerKey = fc.oneof(stringText, fc.constantFrom('"a"', '"A"', '"a"', '"conn_id"', '"frame"', '"Frame"', '""'));

const composite: fc.Arbitrary<Val> = fc.letrec<{ value: Val; arr: Val; obj: Val }>((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, scalar, tie('arr'), tie('obj')),
  arr: fc.tuple(fc.array(fc.tuple(WS, tie('value'), WS), { maxLength: 4 }), WS).map(([items, w]) => ({
    text: '[' + (items.length === 0 ? w : items.map(([a, v, b]) => a + v.text + b).join(',')) + ']',
    kind: 'array' as const,
    depth: 1 + Math.max(0, ...items.map(([, v]) => v.depth)),
  })),
  obj: fc
    .tuple(fc.array(fc.tuple(WS, innerKey, WS, WS, tie('value'), WS), { maxLength: 4 }), WS)
    .map(([members, w]) => ({
      text:
        '{' +
        (members.length === 0 ? w : members.map(([a, k, b, c, v, d]) => a + k + b + ':' + c + v.text + d).join(',')) +
        '}',
      kind: 'object' as const,
      depth: 1 + Math.max(0, ...members.map(([, , , , v]) => v.depth)),
    })),
})).value;

/** A value nested `d` levels deep (mixing arrays and objects). */
function deepText(d: number, objects: boolean): string {
  let open = '';
  let close = '';
  for (let i = 0; i < d; i++) {
    if (objects && i % 2 === 1) {
      open += '{"k":';
      close = '}' + close;
    } else {
      open += '[';
      close = ']' + close;
    }
  }
  return open + '1' + close;
}
/** Depths around the limit: the envelope itself is level 1, so a member may nest 9999 deep. */
const deep: fc.Arbitrary<Val> = fc
  .tuple(fc.oneof(fc.integer({ min: 1, max: 60 }), fc.constantFrom(9_990, 9_998, 9_999)), fc.boolean())
  .map(([d, objects]) => ({ text: deepText(d, objects), kind: 'array' as const, depth: d }));

const validValue: fc.Arbitrary<Val> = fc.oneof({ weight: 6, arbitrary: composite }, { weight: 1, arbitrary: deep });
/** A frame the binary can route (not null, leaves room for the envelope's own level). */
const routable: fc.Arbitrary<Val> = validValue.filter((v) => v.text !== 'null' && v.depth < 9_999);

/** Texts that are not one valid JSON value (any of them makes a whole envelope malformed). */
const INVALID_VALUES = [
  '"\\x"',
  '"\\u12"',
  '"\\uZZZZ"',
  '"\\u00G0"',
  '"abc',
  '"\u0001"',
  '"\t"',
  '"\\',
  "'single'",
  '01',
  '-',
  '1.',
  '.5',
  '1e',
  '1e+',
  '+1',
  'NaN',
  'Infinity',
  '-Infinity',
  '0x10',
  '1_000',
  '- 1',
  '--1',
  'tru',
  'nul',
  'True',
  'NULL',
  'undefined',
  '',
  '[1,]',
  '[,1]',
  '{"a":1,}',
  '{a:1}',
  "{'a':1}",
  '{"a" 1}',
  '{"a":}',
  '[',
  ']',
  '{',
  '}',
  '[1 2]',
  '{"a":1 "b":2}',
  '\u00a01',
  '\u20281',
];
const invalidValue: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(...INVALID_VALUES),
  fc.constantFrom(10_000, 10_001, 20_000).map((d) => deepText(d, false)), // past the limit as a member
  fc
    .tuple(composite, fc.nat())
    .map(([v, cut]) => v.text.slice(0, cut % Math.max(1, v.text.length)))
    .filter((t) => !isValidJson(t)),
);

function isValidJson(t: string): boolean {
  try {
    JSON.parse(t);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Envelope keys (raw tokens) and the field Go's case-insensitive matching selects

type Field = 'conn_id' | 'frame' | 'close_code' | 'push_wake' | null;
const KEYS: Array<[string, Field]> = [
  ['"conn_id"', 'conn_id'],
  ['"CONN_ID"', 'conn_id'],
  ['"cOnN_iD"', 'conn_id'],
  ['"\\u0063onn_id"', 'conn_id'],
  ['"conn\\u005Fid"', 'conn_id'],
  ['"\\u0043\\u004f\\u004e\\u004e\\u005f\\u0049\\u0044"', 'conn_id'],
  ['"frame"', 'frame'],
  ['"FRAME"', 'frame'],
  ['"fRaMe"', 'frame'],
  ['"\\u0066rame"', 'frame'],
  ['"close_code"', 'close_code'],
  ['"CLOSE_CODE"', 'close_code'],
  ['"clo\u017fe_code"', 'close_code'],
  ['"clo\\u017Fe_code"', 'close_code'],
  ['"cloſe_coDe"', 'close_code'],
  ['"push_wake"', 'push_wake'],
  ['"PUSH_WAKE"', 'push_wake'],
  ['"push_wa\u212ae"', 'push_wake'],
  ['"pu\\u0073h_wake"', 'push_wake'],
  // near misses: unknown keys (ignored, value still validated)
  ['"conn_\u0131d"', null],
  ['"conn_\u0130d"', null],
  ['"conn_id "', null],
  ['" conn_id"', null],
  ['"conn-id"', null],
  ['"connid"', null],
  ['"frames"', null],
  ['"fram"', null],
  ['""', null],
  ['"\\u0000frame"', null],
  ['"frame\\u0000"', null],
  ['"close_cod\u0435"', null],
  ['"token"', null],
  ['"x"', null],
];

const CLOSE_CODE_TEXTS = [
  '0',
  '1',
  '1000',
  '1004',
  '1005',
  '1006',
  '1015',
  '2999',
  '3000',
  '4401',
  '4999',
  '5000',
  '65535',
  '65536',
  '99999',
  '4294967296',
  '18446744073709551616',
  '-1',
  '-0',
  '1.0',
  '4401.5',
  '1e3',
  '4.401e3',
  '"4401"',
  'true',
  '[]',
  '{}',
  '[4401]',
];

interface Member {
  key: [string, Field];
  value: string;
  valid: boolean;
  kind: Kind | 'invalid';
}

const memberValue: fc.Arbitrary<{ value: string; valid: boolean; kind: Kind | 'invalid' }> = fc.oneof(
  { weight: 6, arbitrary: validValue.map((v) => ({ value: v.text, valid: true, kind: v.kind })) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(...CLOSE_CODE_TEXTS).map((t) => ({ value: t, valid: true, kind: kindOf(t) })),
  },
  { weight: 2, arbitrary: stringText.map((t) => ({ value: t, valid: true, kind: 'string' as const })) },
  { weight: 1, arbitrary: fc.constant({ value: 'null', valid: true, kind: 'null' as const }) },
  { weight: 1, arbitrary: invalidValue.map((t) => ({ value: t, valid: false, kind: 'invalid' as const })) },
);

function kindOf(t: string): Kind {
  const c = t[0];
  if (c === '"') return 'string';
  if (c === '[') return 'array';
  if (c === '{') return 'object';
  if (c === 't' || c === 'f') return 'bool';
  if (c === 'n') return 'null';
  return 'number';
}

const member: fc.Arbitrary<Member> = fc.tuple(fc.constantFrom(...KEYS), memberValue).map(([key, v]) => ({ key, ...v }));

interface Envelope {
  text: string;
  members: Member[];
  /** Bytes after the closing brace (whitespace is fine, anything else is garbage). */
  trailing: string;
}

function buildEnvelope(
  ms: Array<[string, Member, string, string]>,
  lead: string,
  inner: string,
  trailing: string,
): Envelope {
  return {
    text:
      lead +
      '{' +
      (ms.length === 0 ? inner : ms.map(([a, m, b, c]) => a + m.key[0] + b + ':' + c + m.value + ' ').join(',')) +
      '}' +
      trailing,
    members: ms.map(([, m]) => m),
    trailing,
  };
}

const TRAILING = fc.oneof(
  { weight: 8, arbitrary: WS },
  { weight: 1, arbitrary: fc.constantFrom('x', ',', '}', '{}', '"', '\u0000') },
);
const placed = (m: fc.Arbitrary<Member>): fc.Arbitrary<[string, Member, string, string]> => fc.tuple(WS, m, WS, WS);

/** Any mix of members. */
const anyEnvelope: fc.Arbitrary<Envelope> = fc
  .tuple(fc.array(placed(member), { maxLength: 7 }), WS, WS, TRAILING)
  .map(([ms, lead, inner, trailing]) => buildEnvelope(ms, lead, inner, trailing));

/** Biased towards routable envelopes: a conn_id string and a frame somewhere among noise,
 * with duplicates and close codes, so the route path is exercised as hard as the error paths. */
const keyFor = (field: Field): fc.Arbitrary<[string, Field]> => fc.constantFrom(...KEYS.filter(([, f]) => f === field));
const routeish: fc.Arbitrary<Envelope> = fc
  .tuple(
    fc.array(placed(member), { maxLength: 3 }),
    placed(
      fc
        .tuple(keyFor('conn_id'), stringText)
        .map(([key, value]) => ({ key, value, valid: true, kind: 'string' as const })),
    ),
    placed(fc.tuple(keyFor('frame'), routable).map(([key, v]) => ({ key, value: v.text, valid: true, kind: v.kind }))),
    fc.array(
      placed(
        fc
          .tuple(keyFor('close_code'), fc.constantFrom(...CLOSE_CODE_TEXTS, 'null', '0'))
          .map(([key, value]) => ({ key, value, valid: true, kind: kindOf(value) })),
      ),
      { maxLength: 1 },
    ),
    fc.array(placed(member), { maxLength: 2 }),
    WS,
    TRAILING,
  )
  .map(([before, id, frame, code, after, lead, trailing]) =>
    buildEnvelope([...before, id, ...code, frame, ...after], lead, '', trailing),
  );

const envelope: fc.Arbitrary<Envelope> = fc.oneof(anyEnvelope, routeish);

// ---------------------------------------------------------------------------------------------
// Independent oracle: Go's json.Unmarshal into the envelope struct + the relay's classification
// (docs/decisions.md, "Binary envelopes are decoded with Go's rules"), decided from how each member was generated,
// not from src/protocol/json.ts.

type Expected =
  | { kind: 'malformed'; err: string }
  | { kind: 'wake'; pushWake: string }
  | { kind: 'route'; connId: string; frame: string | null; closeCode: number };

const M = (err: string): Expected => ({ kind: 'malformed', err });

/** Nesting depth of a JSON text (strings skipped), written independently of src/protocol/json.ts. */
function depthOf(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '[' || c === '{') max = Math.max(max, ++depth);
    else if (c === ']' || c === '}') depth--;
  }
  return max;
}

/** Go's grammar = JSON.parse's grammar plus the 10000-level nesting limit. */
function syntaxValid(text: string): boolean {
  return isValidJson(text) && depthOf(text) <= 10_000;
}

/** The expected classification, or null when it cannot be predicted from the members (a broken
 * member that the following text happened to complete, e.g. `{"a":1` absorbing the next keys). */
function oracle(env: Envelope): Expected | null {
  // Syntax errors anywhere (including trailing garbage) win over everything: Go checks validity first.
  if (!syntaxValid(env.text)) return M('malformed envelope');
  if (env.members.some((m) => !m.valid)) return null;
  let connId = '';
  let frame: string | null = null;
  let wake: string | null = null;
  let closeCode = 0;
  let typeErr: Expected | null = null;
  for (const m of env.members) {
    const field = m.key[1];
    if (field === 'conn_id') {
      if (m.kind === 'string') connId = wellFormed(JSON.parse(m.value) as string);
      else if (m.kind !== 'null') typeErr ??= M('conn_id is not a string');
    } else if (field === 'close_code') {
      if (m.kind === 'null') continue;
      if (/^(0|[1-9][0-9]*)$/.test(m.value) && Number(m.value) <= 65535) closeCode = Number(m.value);
      else typeErr ??= M('close_code is not a uint16');
    } else if (field === 'frame') {
      frame = m.kind === 'null' ? null : m.value;
    } else if (field === 'push_wake') {
      wake = m.kind === 'null' ? null : m.value;
    }
  }
  if (typeErr !== null) return typeErr;
  if (connId === '') return wake !== null ? { kind: 'wake', pushWake: wake } : M('missing conn_id');
  if (closeCode === 0 && frame === null) return M('missing frame');
  return { kind: 'route', connId, frame, closeCode };
}

function view(r: BinaryEnvelope): Expected {
  if (r.kind === 'route')
    return {
      kind: 'route',
      connId: r.connId,
      frame: r.frame === null ? null : r.frame.toString('utf8'),
      closeCode: r.closeCode,
    };
  if (r.kind === 'wake') return { kind: 'wake', pushWake: r.pushWake.toString('utf8') };
  return { kind: 'malformed', err: r.err };
}

const SENTINELS = new Set([
  'malformed envelope',
  'envelope is not valid UTF-8',
  'envelope is not a JSON object',
  'conn_id is not a string',
  'close_code is not a uint16',
  'missing conn_id',
  'missing frame',
]);

/** Structural invariants that must hold for ANY input, whatever the classification. */
function checkInvariants(data: Buffer, isBinary: boolean): BinaryEnvelope {
  let r!: BinaryEnvelope;
  expect(() => (r = decodeBinaryEnvelope(data, isBinary))).not.toThrow();
  if (r.kind === 'malformed') {
    expect(SENTINELS.has(r.err), r.err).toBe(true);
    if (isBinary && !isUtf8(data)) expect(r.err).toBe('envelope is not valid UTF-8');
    return r;
  }
  const span = r.kind === 'route' ? r.frame : r.pushWake;
  if (span !== null) {
    // A span of the input itself (zero-copy, nothing re-serialised) holding exactly one JSON value.
    expect(span.buffer).toBe(data.buffer);
    expect(span.byteOffset).toBeGreaterThanOrEqual(data.byteOffset);
    expect(span.byteOffset + span.length).toBeLessThanOrEqual(data.byteOffset + data.length);
    expect(span.length).toBeGreaterThan(0);
    expect(span.toString('utf8')).not.toBe('null');
  }
  if (r.kind === 'route') {
    expect(r.connId).not.toBe('');
    expect(Number.isInteger(r.closeCode) && r.closeCode >= 0 && r.closeCode <= 65535).toBe(true);
    if (r.closeCode === 0) expect(r.frame).not.toBeNull();
  }
  return r;
}

// ---------------------------------------------------------------------------------------------

describe('decoder vs. an independent Go-semantics oracle on hostile envelopes', () => {
  it('classifies exactly as the spec says (deep nesting, 400-digit numbers, case-folded and duplicate keys, surrogate escapes, wrong types, close codes out of range, broken members)', () => {
    const seen: Record<string, number> = {};
    fc.assert(
      fc.property(envelope, fc.boolean(), (env, isBinary) => {
        const data = utf8(env.text);
        const got = checkInvariants(data, isBinary);
        const want = oracle(env);
        if (want === null) {
          seen.unpredictable = (seen.unpredictable ?? 0) + 1;
          return;
        }
        expect(view(got)).toEqual(want);
        const tag = want.kind === 'malformed' ? want.err : want.kind;
        seen[tag] = (seen[tag] ?? 0) + 1;
      }),
      { numRuns: 2_500 },
    );
    figure('codec oracle: classifications seen', seen);
    // The generator must actually reach every outcome, or the property proves little.
    for (const tag of [
      'route',
      'wake',
      'malformed envelope',
      'conn_id is not a string',
      'close_code is not a uint16',
      'missing conn_id',
      'missing frame',
    ]) {
      expect(seen[tag] ?? 0, tag).toBeGreaterThan(3);
    }
  });

  it('a routed frame is byte-for-byte the span the binary sent: whitespace, number spelling, escapes, duplicate keys and key order untouched', () => {
    fc.assert(
      fc.property(
        validValue,
        stringText,
        fc.array(member, { maxLength: 3 }),
        fc.boolean(),
        (frame, idText, noise, isBinary) => {
          fc.pre(frame.text !== 'null' && (JSON.parse(idText) as string) !== '');
          // Unknown-key noise before and after; the frame key last so it wins.
          const noiseText = noise
            .filter((m) => m.valid && m.key[1] === null)
            .map((m) => `${m.key[0]}:${m.value},`)
            .join('');
          const text = `{${noiseText}"conn_id":${idText}, "frame" :  ${frame.text}  }`;
          const r = checkInvariants(utf8(text), isBinary);
          expect(r.kind).toBe('route');
          if (r.kind !== 'route') return;
          expect(r.frame!.equals(utf8(frame.text))).toBe(true);
          expect(r.connId).toBe(wellFormed(JSON.parse(idText) as string));
        },
      ),
      { numRuns: 1_000 },
    );
  });
});

describe('decoder never throws', () => {
  /** Byte-level mutations of otherwise valid hostile envelopes. */
  const mutated = fc
    .tuple(
      envelope,
      fc.array(
        fc.tuple(
          fc.nat(),
          fc.constantFrom('flip', 'delete', 'insert', 'truncate', 'dup'),
          fc.integer({ min: 0, max: 255 }),
        ),
        { minLength: 1, maxLength: 4 },
      ),
    )
    .map(([env, ops]) => {
      let b = utf8(env.text);
      for (const [pos, op, byte] of ops) {
        const p = b.length === 0 ? 0 : pos % b.length;
        if (op === 'flip' && b.length > 0)
          b = Buffer.concat([b.subarray(0, p), Buffer.from([b[p]! ^ (1 << (byte % 8))]), b.subarray(p + 1)]);
        else if (op === 'delete') b = Buffer.concat([b.subarray(0, p), b.subarray(p + 1)]);
        else if (op === 'insert') b = Buffer.concat([b.subarray(0, p), Buffer.from([byte]), b.subarray(p)]);
        else if (op === 'truncate') b = b.subarray(0, p);
        else b = Buffer.concat([b.subarray(0, p), b.subarray(p, p + 16), b.subarray(p)]);
      }
      return b;
    });

  it('on byte-mutated hostile envelopes (both opcodes): never throws, malformed carries a fixed sentinel, spans stay inside the input', () => {
    fc.assert(
      fc.property(mutated, fc.boolean(), (data, isBinary) => void checkInvariants(data, isBinary)),
      { numRuns: 3_000 },
    );
  });

  it('invalid UTF-8 in a binary-opcode envelope is always "envelope is not valid UTF-8" (overlong, surrogate, truncated, stray continuation bytes)', () => {
    const BAD = [
      [0xc0, 0xaf],
      [0xe0, 0x80, 0xaf],
      [0xed, 0xa0, 0x80],
      [0xed, 0xbf, 0xbf],
      [0xf4, 0x90, 0x80, 0x80],
      [0xf8, 0x88, 0x80, 0x80, 0x80],
      [0x80],
      [0xbf],
      [0xc3],
      [0xe2, 0x82],
      [0xff],
      [0xfe],
    ];
    fc.assert(
      fc.property(envelope, fc.constantFrom(...BAD), fc.nat(), (env, bad, pos) => {
        const b = utf8(env.text);
        const p = pos % (b.length + 1);
        const data = Buffer.concat([b.subarray(0, p), Buffer.from(bad), b.subarray(p)]);
        const r = checkInvariants(data, true);
        expect(r).toEqual({ kind: 'malformed', err: 'envelope is not valid UTF-8' });
      }),
      { numRuns: 1_000 },
    );
  });

  it('non-object top levels are classified without throwing (arrays, scalars, deep nesting, null)', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          validValue.map((v) => v.text).filter((t) => !t.startsWith('{')),
          fc.constant('null'),
          fc.constant(' null '),
        ),
        (t) => {
          const r = checkInvariants(utf8(t), false);
          if (t.trim() === 'null') expect(r).toEqual({ kind: 'malformed', err: 'missing conn_id' });
          else expect(r).toEqual({ kind: 'malformed', err: 'envelope is not a JSON object' });
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('phone frames wrap to envelopes the binary parses back to the same JSON value', () => {
  it('hostile valid frames (pretty-printed, 400-digit numbers, surrogate escapes, duplicate keys, 9998-deep nesting), both opcodes', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }),
        WS,
        validValue,
        WS,
        fc.boolean(),
        (connId, a, frame, b, isBinary) => {
          fc.pre(frame.depth <= 9_998); // the envelope adds one level
          const payload = utf8(a + frame.text + b);
          const env = wrapPhoneFrame(connIdPrefix(connId), payload, isBinary);
          expect(env).not.toBeNull();
          const text = env!.toString('utf8');
          // Exactly {"conn_id","frame"}, in that order; the frame is Go's compaction of the payload.
          const parsed = JSON.parse(text) as { conn_id: string; frame: unknown };
          expect(Object.keys(parsed)).toEqual(['conn_id', 'frame']);
          expect(parsed.conn_id).toBe(wellFormed(connId));
          expect(jsonEqual(parsed.frame, JSON.parse(frame.text))).toBe(true);
          const back = decodeBinaryEnvelope(env!, false);
          // A null frame wraps fine but reads back as "no frame" (Go RawMessage semantics).
          if (frame.text === 'null') {
            expect(back).toEqual({ kind: 'malformed', err: 'missing frame' });
            return;
          }
          expect(back.kind).toBe('route');
          if (back.kind !== 'route') return;
          expect(back.frame!.toString('utf8')).toBe(goCompact(frame.text));
          expect(back.connId).toBe(wellFormed(connId));
        },
      ),
      { numRuns: 1_500 },
    );
  });

  it('anything that is not exactly one JSON value is refused (null), never thrown', () => {
    const bad = fc.oneof(
      // (10000 levels are fine for a phone frame alone; only the envelope member limit is 9999.)
      fc
        .oneof(
          fc.constantFrom(...INVALID_VALUES),
          composite
            .chain((v) => fc.nat(v.text.length).map((cut) => v.text.slice(0, cut)))
            .filter((t) => !isValidJson(t)),
        )
        .map(utf8),
      fc.constantFrom(10_001, 12_000).map((d) => utf8(deepText(d, false))),
      fc.tuple(validValue, fc.constantFrom(' x', ',1', ' {}', '\u0000', ' "')).map(([v, g]) => utf8(v.text + g)),
      fc
        .tuple(validValue, fc.constantFrom([0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xff]))
        .map(([v, bytes]) => Buffer.concat([utf8('["'), Buffer.from(bytes), utf8('",' + v.text + ']')])),
    );
    fc.assert(
      fc.property(bad, (payload) => {
        let out: Buffer | null = Buffer.alloc(0);
        expect(() => (out = wrapPhoneFrame(connIdPrefix('client-x-00000000'), payload, true))).not.toThrow();
        expect(out).toBeNull();
      }),
      { numRuns: 800 },
    );
  });
});

describe('adversarial 256 KiB inputs run in linear time', () => {
  const LIMIT = 256 * 1024;
  const bytes = (s: string): number => Buffer.byteLength(s);
  const fill = (head: string, unit: string, tail: string): Buffer => {
    const n = Math.floor((LIMIT - bytes(head) - bytes(tail)) / bytes(unit));
    return utf8(head + unit.repeat(n) + tail);
  };
  const cases: Array<[string, Buffer, 'decode' | 'wrap']> = [
    ['262144 x "[" (decode)', utf8('['.repeat(LIMIT)), 'decode'],
    ['262144 x "[" (wrap)', utf8('['.repeat(LIMIT)), 'wrap'],
    ['frame nested 9999 deep', utf8(`{"conn_id":"c","frame":${deepText(9_999, true)}}`), 'decode'],
    ['20k duplicate conn_id members', fill('{', '"conn_id":"c",', '"frame":1}'), 'decode'],
    ['escaped key variants (slow key path)', fill('{', '"\\u0063onn_\\u0069d":"c",', '"frame":1}'), 'decode'],
    [
      'Kelvin/long-s key variants',
      fill('{', '"push_wa\u212ae":1,"clo\u017fe_code":1,', '"conn_id":"c","frame":1}'),
      'decode',
    ],
    ['conn_id of lone-surrogate escapes', fill('{"frame":1,"conn_id":"', '\\ud800', '"}'), 'decode'],
    ['262k-digit close_code', fill('{"conn_id":"c","close_code":1', '0', '}'), 'decode'],
    ['262k-digit number frame', fill('{"conn_id":"c","frame":1', '0', '}'), 'decode'],
    ['many tiny unknown members', fill('{', '"a":0,', '"conn_id":"c","frame":1}'), 'decode'],
    ['string of "<" (wrap escapes x6)', fill('"', '<', '"'), 'wrap'],
    ['string of U+2028 (wrap escapes x2)', fill('"', '\u2028', '"'), 'wrap'],
    ['whitespace-only array body', fill('[', ' ', ']'), 'wrap'],
    ['pretty array of 1-digit numbers', fill('[0', ',\n 0', ']'), 'wrap'],
    ['string of escapes', fill('"', '\\u0000', '"'), 'wrap'],
  ];

  it('every case completes in well under 250 ms (no super-linear path a peer can trigger)', () => {
    const timings: Record<string, number> = {};
    for (const [name, data, op] of cases) {
      expect(data.length, name).toBeLessThanOrEqual(LIMIT);
      // Warm once, then take the best of three (a loaded CI box adds noise, not complexity).
      const run = (): unknown =>
        op === 'decode'
          ? decodeBinaryEnvelope(data, true)
          : wrapPhoneFrame(connIdPrefix('client-x-00000000'), data, true);
      run();
      let best = Infinity;
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        run();
        best = Math.min(best, performance.now() - t0);
      }
      timings[name] = Math.round(best * 100) / 100;
    }
    figure('codec worst-case 256 KiB timings (ms)', timings);
    for (const [name, ms] of Object.entries(timings)) expect(ms, name).toBeLessThan(250);
  });
});

// ---------------------------------------------------------------------------------------------
// End to end through a real relay

interface Received {
  data: Buffer;
  isBinary: boolean;
}

class ByteClient {
  readonly got: Received[] = [];
  closed: number | undefined;
  constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary: boolean) => this.got.push({ data: Buffer.from(data), isBinary }));
    ws.on('close', (code: number) => (this.closed = code));
    ws.on('error', () => {});
  }
  static async open(url: string, headers: Record<string, string>): Promise<ByteClient> {
    const ws = new WebSocket(url, { headers, perMessageDeflate: false });
    const c = new ByteClient(ws);
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      }),
      3_000,
      'open',
    );
    return c;
  }
  send(data: Buffer, binary: boolean): void {
    this.ws.send(data, { binary });
  }
}

describe('end to end through a real relay', () => {
  let r: TestRelay;
  let bin: TestClient;
  let phones: { c: ByteClient; id: string }[];

  beforeAll(async () => {
    r = await startRelay();
    bin = await connectBinary(r, 'codec-e2e');
    phones = [];
    for (let i = 0; i < 2; i++) {
      const c = await ByteClient.open(`${r.wsUrl}/v1/client`, phoneHeaders('codec-e2e'));
      await waitFor(() => r.relay.counts().phones === i + 1, 3_000, 'registration');
      const n = bin.messages.length;
      c.send(utf8(`{"hello":${i}}`), false);
      const env = JSON.parse(await bin.message(n + 1)) as { conn_id: string };
      phones.push({ c, id: env.conn_id });
    }
  });

  afterAll(async () => {
    for (const p of phones ?? []) p.c.ws.terminate();
    bin?.ws.terminate();
    await r?.close();
  });

  it('random valid frames from the binary reach the addressed phone byte-identical, as text frames, in order (hostile envelope shapes: case-folded/duplicate keys, noise members, close_code 0/null, ignored push_wake, both opcodes)', async () => {
    let sent = 0;
    const expected: Buffer[][] = [[], []];
    const frameKey = fc.constantFrom('"frame"', '"FRAME"', '"Frame"', '"\\u0066rame"');
    const idKey = fc.constantFrom('"conn_id"', '"CONN_ID"', '"\\u0063onn_id"', '"Conn_Id"');
    const extras = fc.array(
      fc.oneof(
        validValue.map((v) => `"noise":${v.text}`),
        fc.constantFrom(
          '"close_code":0',
          '"close_code":null',
          '"push_wake":{"platform":"fcm","token":"t"}',
          '"frame":null',
          '"FRAME":[1,2]',
          '"conn_id":null',
        ),
      ),
      { maxLength: 3 },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 1 }), routable, frameKey, idKey, extras, fc.boolean(), WS), {
          minLength: 1,
          maxLength: 8,
        }),
        async (batch) => {
          for (const [which, frame, fk, ik, ex, binaryOpcode, w] of batch) {
            // Extras first (a later frame key must win over an earlier "frame" noise member).
            const members = [...ex, `${ik}:${w}${JSON.stringify(phones[which]!.id)}`, `${fk}:${w}${frame.text}${w}`];
            bin.ws.send(utf8(`{${w}${members.join(',' + w)}}`), { binary: binaryOpcode });
            expected[which]!.push(utf8(frame.text));
            sent++;
          }
          await waitFor(
            () => phones.every((p, i) => p.c.got.length >= expected[i]!.length),
            5_000,
            'frames at the phones',
          );
        },
      ),
      { numRuns: 60 },
    );
    for (let i = 0; i < 2; i++) {
      const got = phones[i]!.c.got;
      expect(got.length).toBe(expected[i]!.length);
      for (let k = 0; k < got.length; k++) {
        expect(got[k]!.isBinary, 'relay sends TEXT frames').toBe(false);
        expect(got[k]!.data.equals(expected[i]![k]!), `frame ${k} to phone ${i}`).toBe(true);
      }
    }
    figure('codec e2e: binary->phone frames checked byte-for-byte', sent);
    expect(r.logs.filter((l) => l.msg === 'binary_forwarder_unmarshal_err')).toEqual([]);
    expect(bin.closed).toBeUndefined();
  });

  it('random valid frames from phones reach the binary as {conn_id, frame} envelopes that parse back to the same JSON value, per-phone order kept', async () => {
    const startAt = bin.messages.length;
    const sentBy: string[][] = [[], []];
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 1 }), WS, routable, WS, fc.boolean()), {
          minLength: 1,
          maxLength: 8,
        }),
        async (batch) => {
          for (const [which, a, frame, b, binaryOpcode] of batch) {
            phones[which]!.c.send(utf8(a + frame.text + b), binaryOpcode);
            sentBy[which]!.push(frame.text);
          }
          const total = sentBy[0]!.length + sentBy[1]!.length;
          await waitFor(() => bin.messages.length - startAt >= total, 5_000, 'envelopes at the binary');
        },
      ),
      { numRuns: 60 },
    );
    const envelopes = bin.messages.slice(startAt);
    const byPhone: string[][] = [[], []];
    for (const text of envelopes) {
      const env = JSON.parse(text) as { conn_id: string; frame: unknown };
      expect(Object.keys(env)).toEqual(['conn_id', 'frame']);
      const which = phones.findIndex((p) => p.id === env.conn_id);
      expect(which).toBeGreaterThanOrEqual(0);
      // The exact bytes Go's encoder would have produced for the frame.
      const frameText = text.slice(`{"conn_id":${JSON.stringify(env.conn_id)},"frame":`.length, -1);
      byPhone[which]!.push(frameText);
    }
    for (let i = 0; i < 2; i++) {
      expect(byPhone[i]!.length).toBe(sentBy[i]!.length);
      for (let k = 0; k < sentBy[i]!.length; k++) {
        expect(byPhone[i]![k]).toBe(goCompact(sentBy[i]![k]!));
        expect(jsonEqual(JSON.parse(byPhone[i]![k]!), JSON.parse(sentBy[i]![k]!))).toBe(true);
      }
    }
    figure('codec e2e: phone->binary envelopes checked', envelopes.length);
    expect(phones.every((p) => p.c.closed === undefined)).toBe(true);
  });

  it('hostile malformed envelopes interleaved with valid ones: the binary stays up, every malformed one is logged once with a fixed sentinel (or counted as suppressed, docs/operations.md "Log volume"), every valid one is delivered in order', async () => {
    const SUPPRESSED = 'pyrycode_relay_log_lines_suppressed_total{event="binary_forwarder_unmarshal_err"}';
    const logBefore = r.logs.filter((l) => l.msg === 'binary_forwarder_unmarshal_err').length;
    const suppressedBefore = await r.metric(SUPPRESSED);
    const b2pBefore = await r.metric(B2P);
    const p2bBefore = await r.metric(P2B);
    const target = phones[0]!;
    const gotBefore = target.c.got.length;
    let malformed = 0;
    const expected: Buffer[] = [];
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            envelope.map((e) => e.text),
            envelope.map((e) => e.text.slice(0, Math.floor(e.text.length / 2))),
          ),
          { minLength: 1, maxLength: 10 },
        ),
        routable,
        async (junk, good) => {
          for (const text of junk) {
            // Only the malformed ones (the oracle property above pins which those are): a generated
            // envelope can also be a wake, or route to a conn_id nobody has.
            const data = utf8(text);
            if (decodeBinaryEnvelope(data, false).kind !== 'malformed') continue;
            bin.ws.send(data);
            malformed++;
          }
          bin.ws.send(utf8(`{"conn_id":${JSON.stringify(target.id)},"frame":${good.text}}`));
          expected.push(utf8(good.text));
          await waitFor(() => target.c.got.length - gotBefore >= expected.length, 5_000, 'good frame delivered');
        },
      ),
      { numRuns: 40 },
    );
    await waitFor(
      async () =>
        r.logs.filter((l) => l.msg === 'binary_forwarder_unmarshal_err').length -
          logBefore +
          (await r.metric(SUPPRESSED)) -
          suppressedBefore ===
        malformed,
      3_000,
      'one warn (or one suppressed line) per malformed envelope',
    );
    const lines = r.logs.filter((l) => l.msg === 'binary_forwarder_unmarshal_err').slice(logBefore);
    for (const l of lines) expect(SENTINELS.has(String(l.err))).toBe(true);
    const got = target.c.got.slice(gotBefore);
    expect(got.map((g) => g.data.toString('utf8'))).toEqual(expected.map((e) => e.toString('utf8')));
    expect(await r.metric(B2P)).toBe(b2pBefore + expected.length);
    expect(await r.metric(P2B)).toBe(p2bBefore);
    expect(bin.closed).toBeUndefined();
    figure('codec e2e: malformed envelopes survived', malformed);
  });

  it('the binary is still the same connection and both phones are still registered', () => {
    expect(bin.closed).toBeUndefined();
    expect(r.relay.counts()).toEqual({ binaries: 1, phones: 2 });
    expect(r.relay.registry.binaryFor('codec-e2e')).toBeDefined();
  });
});
