import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  type BinaryEnvelope,
  closeNotice,
  connIdPrefix,
  decodeBinaryEnvelope,
  wrapPhoneFrame,
} from '../../src/protocol/envelope.js';
import { ENVELOPE_ERRORS, jsonishString } from '../helpers/json-oracle.js';

const b = (s: string): Buffer => Buffer.from(s, 'utf8');
const nested = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth);

/** Go's HTML escaping of raw characters, for building expected bytes from JSON.stringify output. */
const htmlEscape = (s: string): string =>
  s.replace(/[<>&\u2028\u2029]/g, (ch) => '\\u' + ch.charCodeAt(0).toString(16).padStart(4, '0'));

/** Decode, with the frame / pushWake turned into strings so results compare with toEqual. */
function decode(s: string | Buffer, isBinary = false): unknown {
  const r = decodeBinaryEnvelope(typeof s === 'string' ? b(s) : s, isBinary);
  if (r.kind === 'route') return { ...r, frame: r.frame === null ? null : r.frame.toString('utf8') };
  if (r.kind === 'wake') return { kind: 'wake', pushWake: r.pushWake.toString('utf8') };
  return r;
}
const route = (connId: string, frame: string | null, closeCode = 0) => ({ kind: 'route', connId, frame, closeCode });
const wake = (pushWake: string) => ({ kind: 'wake', pushWake });
const bad = (err: string) => ({ kind: 'malformed', err });
const MALFORMED = bad('malformed envelope');
const NOT_OBJECT = bad('envelope is not a JSON object');
const MISSING_CONN_ID = bad('missing conn_id');
const MISSING_FRAME = bad('missing frame');
const CONN_ID_TYPE = bad('conn_id is not a string');
const CLOSE_CODE_TYPE = bad('close_code is not a uint16');

// JSON-ish token soup: near-valid text so both accept and reject paths are exercised.
const TOKENS = [
  '{',
  '}',
  '[',
  ']',
  ',',
  ':',
  '"',
  '"',
  '\\',
  'u',
  '0',
  '1',
  '9',
  '-',
  '.',
  'e',
  'true',
  'null',
  ' ',
  '\n',
  '\f',
  'x',
  '<',
  '&',
  '\u2028',
  '\u0001',
  'é',
  '\\u00',
  '\\"',
  '"conn_id":',
  '"frame":',
  '01',
];
const jsonish = jsonishString(TOKENS);

// ---------------------------------------------------------------------------------------------

describe('connIdPrefix / closeNotice', () => {
  it('plain conn_id', () => {
    expect(connIdPrefix('client-1').toString()).toBe('{"conn_id":"client-1","frame":');
    expect(closeNotice('client-1', 4401).toString()).toBe('{"conn_id":"client-1","close_code":4401}');
    expect(closeNotice('client-1', 0).toString()).toBe('{"conn_id":"client-1","close_code":0}');
  });

  it('escapes like Go json.Marshal (escapeHTML, Go >= 1.22 short \\b \\f)', () => {
    const id = 'client-a"b\\c\nd\re\tf<g>h&i\u2028j\u2029k\u0001\u001f\b\fé😀/\u007f';
    const enc = String.raw`"client-a\"b\\c\nd\re\tf\u003cg\u003eh\u0026i\u2028j\u2029k\u0001\u001f\b\fé😀/` + '\u007f"';
    expect(connIdPrefix(id)).toEqual(b('{"conn_id":' + enc + ',"frame":'));
    expect(closeNotice(id, 1000)).toEqual(b('{"conn_id":' + enc + ',"close_code":1000}'));
    // and it is valid JSON that round-trips
    expect(JSON.parse(closeNotice(id, 1000).toString())).toEqual({ conn_id: id, close_code: 1000 });
  });

  it('a lone surrogate is written as U+FFFD (what Go holds for such a string)', () => {
    expect(connIdPrefix('a\ud800b').toString()).toBe('{"conn_id":"a\ufffdb","frame":');
  });

  it('closeNotice has exactly conn_id and close_code, in that order', () => {
    expect(Object.keys(JSON.parse(closeNotice('x', 1).toString()))).toEqual(['conn_id', 'close_code']);
  });

  it('closeNotice rejects a non-integer code instead of emitting invalid JSON', () => {
    expect(() => closeNotice('x', Number.NaN)).toThrow(RangeError);
    expect(() => closeNotice('x', 1.5)).toThrow(RangeError);
  });

  it('round-trips arbitrary conn_ids through JSON.parse (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), fc.integer({ min: 0, max: 65535 }), (id, code) => {
        expect(JSON.parse(closeNotice(id, code).toString())).toEqual({ conn_id: id, close_code: code });
        expect(JSON.parse(connIdPrefix(id).toString() + '1}')).toEqual({ conn_id: id, frame: 1 });
      }),
    );
  });
});

// ---------------------------------------------------------------------------------------------

describe('wrapPhoneFrame', () => {
  const prefix = connIdPrefix('client-1');
  const wrap = (payload: string | Buffer, isBinary = false): string | null => {
    const out = wrapPhoneFrame(prefix, typeof payload === 'string' ? b(payload) : payload, isBinary);
    return out === null ? null : out.toString('utf8');
  };
  const env = (frame: string) => '{"conn_id":"client-1","frame":' + frame + '}';

  it('forwards a compact payload verbatim (big ints, duplicate keys, key order, escapes)', () => {
    const payload = '{"z":1,"a":12345678901234567890,"a":-0.0E+00,"s":"\\u00e9\\/é","n":null,"t":[true,false]}';
    const out = wrapPhoneFrame(prefix, b(payload), false)!;
    expect(out).toEqual(b(env(payload)));
    expect(out.length).toBe(prefix.length + b(payload).length + 1);
  });

  it('compacts insignificant whitespace, never inside strings', () => {
    expect(wrap('  {\n  "a b" : [ 1,\t2 ],\r\n  "c": " x  y "\n}\n')).toBe(env('{"a b":[1,2],"c":" x  y "}'));
    expect(wrap(' 1 ')).toBe(env('1'));
    expect(wrap('"x"\n')).toBe(env('"x"'));
  });

  it('HTML-escapes < > & U+2028 U+2029 inside strings, nothing else', () => {
    expect(wrap('{"<k>":"a<b>&c\u2028d\u2029e\u2027é😀"}')).toBe(
      env('{"\\u003ck\\u003e":"a\\u003cb\\u003e\\u0026c\\u2028d\\u2029e\u2027é😀"}'),
    );
    expect(wrap('"\\u003c already escaped"')).toBe(env('"\\u003c already escaped"'));
    expect(wrap('[ "<" ]')).toBe(env('["\\u003c"]')); // both transforms together
  });

  it('rejects anything that is not exactly one valid JSON value', () => {
    for (const p of [
      '',
      ' ',
      '{',
      '}',
      '{"a":1} x',
      '{"a":1}{}',
      '"\\u12"',
      '"a\u0001b"',
      '"a\tb"',
      "{'a':1}",
      '[1,]',
      'NaN',
      '01',
    ]) {
      expect(wrap(p), JSON.stringify(p)).toBeNull();
    }
  });

  it('nesting: 10000 levels pass, 10001 are rejected', () => {
    expect(wrap(nested(10000))).toBe(env(nested(10000)));
    expect(wrap(nested(10001))).toBeNull();
    expect(wrap(Buffer.alloc(256 * 1024, '['))).toBeNull();
  });

  it('checks UTF-8 only for binary opcodes', () => {
    const invalid = Buffer.from([0x22, 0xff, 0x22]);
    expect(wrapPhoneFrame(prefix, invalid, true)).toBeNull();
    expect(wrapPhoneFrame(prefix, invalid, false)).toEqual(Buffer.concat([prefix, invalid, b('}')]));
    const surrogate = Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22]); // CESU-style U+D800
    expect(wrapPhoneFrame(prefix, surrogate, true)).toBeNull();
    expect(wrap('"é"', true)).toBe(env('"é"'));
  });

  it('output parses back to {conn_id, frame}', () => {
    const payload = '{ "msg": "hi <there> & \u2028", "n": [1, 2.5, {"x": null}] }';
    expect(JSON.parse(wrap(payload)!)).toEqual({ conn_id: 'client-1', frame: JSON.parse(payload) });
  });

  it('property: pretty-printed values come out as Go bytes and parse back', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), fc.jsonValue(), fc.boolean(), (id, v, isBinary) => {
        const pre = connIdPrefix(id);
        const out = wrapPhoneFrame(pre, b(JSON.stringify(v, null, 2)), isBinary);
        expect(out).not.toBeNull();
        expect(out!.toString()).toBe(pre.toString() + htmlEscape(JSON.stringify(v)) + '}');
        expect(JSON.parse(out!.toString())).toEqual({ conn_id: id, frame: JSON.parse(JSON.stringify(v)) });
      }),
    );
  });

  it('property: returns null exactly when JSON.parse throws', () => {
    fc.assert(
      fc.property(jsonish, fc.boolean(), (s, isBinary) => {
        let ok = true;
        try {
          JSON.parse(s);
        } catch {
          ok = false;
        }
        expect(wrapPhoneFrame(prefix, b(s), isBinary) !== null).toBe(ok);
      }),
      { numRuns: 3000 },
    );
  });
});

// ---------------------------------------------------------------------------------------------

describe('decodeBinaryEnvelope: classification', () => {
  it('routes a frame', () => {
    expect(decode('{"conn_id":"c","frame":{"a":1}}')).toEqual(route('c', '{"a":1}'));
    expect(decode(' {"frame":"x","conn_id":"client-9"} ')).toEqual(route('client-9', '"x"'));
  });

  it('keeps the frame as the exact input span, without copying', () => {
    const data = b('{"conn_id":"c","frame": { "b" : [1, 2] } }');
    const r = decodeBinaryEnvelope(data, false);
    expect(r.kind).toBe('route');
    if (r.kind !== 'route') return;
    expect(r.frame!.toString()).toBe('{ "b" : [1, 2] }');
    expect(r.frame!.buffer).toBe(data.buffer);
    expect(r.frame!.byteOffset).toBe(data.byteOffset + data.indexOf('{ "b"'));
  });

  it('frame bytes are never re-serialised', () => {
    for (const f of [
      '12345678901234567890',
      '1.50E+3',
      '"\\u003c<\u2028"',
      '{"a":1,"a":2}',
      'true',
      '[ ]',
      '""',
      '0',
    ]) {
      expect(decode('{"conn_id":"c","frame":' + f + '}')).toEqual(route('c', f));
    }
  });

  it('close notice from the binary: close_code without frame', () => {
    expect(decode('{"conn_id":"c","close_code":4401}')).toEqual(route('c', null, 4401));
    expect(decode('{"conn_id":"c","close_code":1000,"frame":[1]}')).toEqual(route('c', '[1]', 1000));
  });

  it('push_wake without conn_id is a wake, regardless of frame/close_code', () => {
    expect(decode('{"push_wake":{"title":"x"}}')).toEqual(wake('{"title":"x"}'));
    expect(decode('{"conn_id":"","push_wake":true,"frame":1,"close_code":5}')).toEqual(wake('true'));
    expect(decode('{"conn_id":null,"push_wake": [ 1 ] }')).toEqual(wake('[ 1 ]'));
    expect(decode('{"push_wake":"","frame":null}')).toEqual(wake('""'));
  });

  it('push_wake with a conn_id is ignored', () => {
    expect(decode('{"conn_id":"c","frame":1,"push_wake":{"weird":[{}]}}')).toEqual(route('c', '1'));
    expect(decode('{"conn_id":"c","push_wake":1}')).toEqual(MISSING_FRAME);
  });

  it('missing conn_id', () => {
    for (const s of [
      '{}',
      ' { } ',
      '{"frame":1}',
      '{"conn_id":"","frame":1}',
      '{"conn_id":null,"frame":1}',
      '{"push_wake":null}',
      'null',
      ' null\n',
    ]) {
      expect(decode(s), s).toEqual(MISSING_CONN_ID);
    }
  });

  it('missing frame', () => {
    for (const s of [
      '{"conn_id":"c"}',
      '{"conn_id":"c","frame":null}',
      '{"conn_id":"c","frame": null ,"close_code":0}',
      '{"conn_id":"c","close_code":null}',
    ]) {
      expect(decode(s), s).toEqual(MISSING_FRAME);
    }
  });

  it('top level must be an object', () => {
    for (const s of ['[]', '[{"conn_id":"c","frame":1}]', '"x"', '1', 'true', 'false']) {
      expect(decode(s), s).toEqual(NOT_OBJECT);
    }
  });

  it('syntax errors, trailing garbage, empty input', () => {
    for (const s of [
      '',
      '   ',
      '{',
      '}',
      'nul',
      '{"conn_id":"c","frame":1} x',
      '{"conn_id":"c","frame":1}}',
      '{"conn_id":"c","frame":1}{}',
      '{"conn_id":"c","frame":1,}',
      '{"conn_id":"c" "frame":1}',
      '{"conn_id":"c","frame":}',
      '{"conn_id":"c","frame":1,"x":tru}',
      '{"conn_id":"c\\x","frame":1}',
      '{"conn_id":"c","frame":"\\ud8"}',
      '{conn_id:"c"}',
      '{"conn_id":"c","frame":1',
      'null x',
      '{"conn_id":1,"frame":', // a type error does not hide a later syntax error (Go validates first)
    ]) {
      expect(decode(s), s).toEqual(MALFORMED);
    }
  });

  it('nesting counts the envelope itself toward the 10000 limit', () => {
    expect(decode('{"conn_id":"c","frame":' + nested(9999) + '}')).toEqual(route('c', nested(9999)));
    expect(decode('{"conn_id":"c","frame":' + nested(10000) + '}')).toEqual(MALFORMED);
    expect(decode('{"conn_id":"c","frame":1,"x":' + nested(10000) + '}')).toEqual(MALFORMED);
    expect(decode(Buffer.alloc(256 * 1024, '['))).toEqual(MALFORMED);
    expect(decode('{"a":' + '['.repeat(256 * 1024))).toEqual(MALFORMED);
  });

  it('UTF-8 is checked only for binary opcodes', () => {
    const data = Buffer.concat([b('{"conn_id":"c","frame":"'), Buffer.from([0xff]), b('"}')]);
    expect(decode(data, true)).toEqual(bad('envelope is not valid UTF-8'));
    const r = decodeBinaryEnvelope(data, false);
    expect(r.kind === 'route' && r.frame!.equals(Buffer.from([0x22, 0xff, 0x22]))).toBe(true);
    expect(decode('{"conn_id":"é","frame":"😀"}', true)).toEqual(route('é', '"😀"'));
  });
});

describe('decodeBinaryEnvelope: keys (Go case-insensitive matching)', () => {
  it('ASCII case variants', () => {
    expect(decode('{"CONN_ID":"c","Frame":1}')).toEqual(route('c', '1'));
    expect(decode('{"Conn_Id":"c","CLOSE_CODE":7}')).toEqual(route('c', null, 7));
    expect(decode('{"PUSH_WAKE":1}')).toEqual(wake('1'));
  });

  it('escaped keys are compared unescaped', () => {
    expect(decode('{"conn\\u005fid":"c","fr\\u0061me":1}')).toEqual(route('c', '1'));
    expect(decode('{"\\u0043ONN_ID":"c","frame":1}')).toEqual(route('c', '1'));
  });

  it('U+017F (long s) matches s and U+212A (Kelvin) matches k, escaped or raw', () => {
    expect(decode('{"conn_id":"c","clo\\u017fe_code":4000}')).toEqual(route('c', null, 4000));
    expect(decode('{"conn_id":"c","cloſe_code":4000}')).toEqual(route('c', null, 4000));
    expect(decode('{"push_wa\\u212ae":1}')).toEqual(wake('1'));
    expect(decode('{"push_waKe":1}')).toEqual(wake('1'));
    expect(decode('{"pu\\u017fh_wa\\u212Ae":2}')).toEqual(wake('2'));
  });

  it('near misses are unknown keys (ignored, but their values must be valid)', () => {
    for (const k of [
      'conn_ıd',
      'conn_İd',
      'conn_id ',
      ' conn_id',
      'conn-id',
      'connid',
      'conn_id\\u0000',
      'framé',
      'frame\\u00a0',
      'ｆrame',
      'close_codes',
      '',
    ]) {
      expect(decode('{"' + k + '":"c","conn_id":"x","frame":1}'), k).toEqual(route('x', '1'));
      expect(decode('{"conn_id":"x","' + k + '":5}'), k).toEqual(MISSING_FRAME);
    }
  });
});

describe('decodeBinaryEnvelope: values, duplicates and nulls', () => {
  it('conn_id is decoded (escapes, surrogates like Go)', () => {
    expect(decode('{"conn_id":"cli\\u0065nt-\\ud83d\\ude00\\n","frame":1}')).toEqual(route('client-😀\n', '1'));
    expect(decode('{"conn_id":"x\\udc00y","frame":1}')).toEqual(route('x\ufffdy', '1'));
    expect(decode('{"conn_id":"client-é","frame":1}')).toEqual(route('client-é', '1'));
  });

  it('conn_id of any non-string, non-null type is malformed', () => {
    for (const v of ['1', 'true', 'false', '{}', '[]', '["c"]', '{"a":"c"}', '-0']) {
      expect(decode('{"conn_id":' + v + ',"frame":1}'), v).toEqual(CONN_ID_TYPE);
    }
  });

  it('close_code edge values', () => {
    const cc = (v: string) => decode('{"conn_id":"c","frame":1,"close_code":' + v + '}');
    expect(cc('0')).toEqual(route('c', '1', 0));
    expect(cc('65535')).toEqual(route('c', '1', 65535));
    expect(cc('null')).toEqual(route('c', '1', 0));
    for (const v of [
      '65536',
      '100000',
      '99999999999999999999999',
      '-1',
      '-0',
      '1.0',
      '1e3',
      '1E3',
      '0.5',
      '"4401"',
      'true',
      '{}',
      '[]',
      '[4401]',
    ]) {
      expect(cc(v), v).toEqual(CLOSE_CODE_TYPE);
    }
    expect(decode('{"conn_id":"c","close_code":0}')).toEqual(MISSING_FRAME);
  });

  it('duplicates: last wins, with Go null rules', () => {
    expect(decode('{"conn_id":"a","conn_id":"b","frame":1}')).toEqual(route('b', '1'));
    expect(decode('{"conn_id":"a","conn_id":null,"frame":1}')).toEqual(route('a', '1')); // null leaves string
    expect(decode('{"conn_id":"a","CONN_ID":"","push_wake":1}')).toEqual(wake('1'));
    expect(decode('{"conn_id":"c","close_code":4000,"close_code":null}')).toEqual(route('c', null, 4000));
    expect(decode('{"conn_id":"c","close_code":4000,"close_code":0,"frame":2}')).toEqual(route('c', '2', 0));
    expect(decode('{"conn_id":"c","frame":1,"frame":2}')).toEqual(route('c', '2'));
    expect(decode('{"conn_id":"c","frame":1,"frame":null}')).toEqual(MISSING_FRAME); // null clears RawMessage
    expect(decode('{"conn_id":"c","frame":null,"frame":3}')).toEqual(route('c', '3'));
    expect(decode('{"push_wake":1,"push_wake":null}')).toEqual(MISSING_CONN_ID);
    expect(decode('{"push_wake":1,"Push_Wake":2}')).toEqual(wake('2'));
  });

  it('a type error is sticky even if a later duplicate is valid (Go saves the first error)', () => {
    expect(decode('{"close_code":70000,"close_code":1,"conn_id":"c"}')).toEqual(CLOSE_CODE_TYPE);
    expect(decode('{"conn_id":5,"conn_id":"c","frame":1}')).toEqual(CONN_ID_TYPE);
    expect(decode('{"conn_id":5,"close_code":-1,"frame":1}')).toEqual(CONN_ID_TYPE);
  });

  it('type errors win over classification (wake/missing)', () => {
    expect(decode('{"conn_id":1,"push_wake":1}')).toEqual(CONN_ID_TYPE);
    expect(decode('{"push_wake":1,"close_code":"x"}')).toEqual(CLOSE_CODE_TYPE);
  });
});

// ---------------------------------------------------------------------------------------------

type Field = 'conn_id' | 'frame' | 'close_code' | 'push_wake' | null;
// Raw key tokens and the Go field each one selects.
const KEY_VARIANTS: Array<[string, Field]> = [
  ['"conn_id"', 'conn_id'],
  ['"CONN_ID"', 'conn_id'],
  ['"Conn_Id"', 'conn_id'],
  ['"conn\\u005fid"', 'conn_id'],
  ['"frame"', 'frame'],
  ['"FRAME"', 'frame'],
  ['"fr\\u0061me"', 'frame'],
  ['"close_code"', 'close_code'],
  ['"Close_Code"', 'close_code'],
  ['"clo\\u017fe_code"', 'close_code'],
  ['"cloſe_code"', 'close_code'],
  ['"push_wake"', 'push_wake'],
  ['"PUSH_WAKE"', 'push_wake'],
  ['"push_wa\\u212ae"', 'push_wake'],
  ['"push_waKe"', 'push_wake'],
  ['"conn_ıd"', null],
  ['"frame "', null],
  ['"close-code"', null],
  ['"x"', null],
  ['""', null],
];
const VALUE_TEXT = fc.oneof(
  fc.constantFrom(
    'null',
    ' null ',
    '""',
    '"c"',
    '"client-1"',
    '"\\u0063"',
    '0',
    '1',
    '4401',
    '65535',
    '65536',
    '-1',
    '1.0',
    '1e3',
    '-0',
    'true',
    '[]',
    '{}',
    ' 7 ',
    '{ "a" : 1 }',
  ),
  fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)),
  fc.string().map((s) => JSON.stringify(s)),
  fc.integer({ min: -5, max: 70000 }).map(String),
);

/** Reference model of Go's Unmarshal + the relay's classification, using JSON.parse per member. */
function model(entries: Array<[[string, Field], string]>): unknown {
  let connId = '';
  let frame: string | null = null;
  let wakeRaw: string | null = null;
  let closeCode = 0;
  let err: unknown = null;
  for (const [[, field], text] of entries) {
    const v: unknown = JSON.parse(text);
    const raw = text.trim();
    if (field === 'conn_id') {
      if (typeof v === 'string') connId = v;
      else if (v !== null) err ??= CONN_ID_TYPE;
    } else if (field === 'close_code') {
      if (v === null) continue;
      if (/^(0|[1-9][0-9]*)$/.test(raw) && Number(raw) <= 65535) closeCode = Number(raw);
      else err ??= CLOSE_CODE_TYPE;
    } else if (field === 'frame') {
      frame = v === null ? null : raw;
    } else if (field === 'push_wake') {
      wakeRaw = v === null ? null : raw;
    }
  }
  if (err !== null) return err;
  if (connId === '') return wakeRaw !== null ? wake(wakeRaw) : MISSING_CONN_ID;
  if (closeCode === 0 && frame === null) return MISSING_FRAME;
  return route(connId, frame, closeCode);
}

describe('decodeBinaryEnvelope: properties', () => {
  it('matches a Go-semantics model on random envelopes (keys, duplicates, nulls, types)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom(...KEY_VARIANTS), VALUE_TEXT), { maxLength: 8 }),
        fc.constantFrom('', ' ', '\n\t'),
        (entries, ws) => {
          const text = '{' + ws + entries.map(([[k], v]) => k + ws + ':' + v).join(ws + ',' + ws) + ws + '}';
          expect(decode(text)).toEqual(model(entries));
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('routes JSON.stringify({conn_id, frame}) with the exact frame bytes', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', minLength: 1 }), fc.jsonValue(), (connId, v) => {
        fc.pre(v !== null);
        const r = decodeBinaryEnvelope(b(JSON.stringify({ conn_id: connId, frame: v })), true);
        expect(r.kind).toBe('route');
        if (r.kind !== 'route') return;
        expect(r.connId).toBe(connId);
        expect(r.frame!.toString()).toBe(JSON.stringify(v));
        expect(r.closeCode).toBe(0);
      }),
    );
  });

  it('the wrap output decodes back to the same conn_id and (compacted) frame', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', minLength: 1 }), fc.jsonValue(), (connId, v) => {
        fc.pre(v !== null);
        const wrapped = wrapPhoneFrame(connIdPrefix(connId), b(JSON.stringify(v, null, 1)), true)!;
        expect(decode(wrapped, true)).toEqual(route(connId, htmlEscape(JSON.stringify(v))));
      }),
    );
  });

  const neverThrows = (data: Buffer) => {
    for (const isBinary of [false, true]) {
      let r: BinaryEnvelope | undefined;
      expect(() => (r = decodeBinaryEnvelope(data, isBinary))).not.toThrow();
      // malformed results only ever carry a fixed sentinel
      if (r!.kind === 'malformed') expect(ENVELOPE_ERRORS.has(r!.err)).toBe(true);
    }
  };

  it('never throws on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (a) => neverThrows(Buffer.from(a))),
      { numRuns: 2000 },
    );
  });

  it('never throws on arbitrary / JSON-ish strings', () => {
    fc.assert(
      fc.property(jsonish, (s) => neverThrows(b(s))),
      { numRuns: 2000 },
    );
  });

  it('never throws on JSON values wrapped in random objects', () => {
    const key = fc.oneof(fc.constantFrom(...KEY_VARIANTS.map(([k]) => JSON.parse(k) as string)), fc.string());
    fc.assert(
      fc.property(fc.dictionary(key, fc.jsonValue(), { maxKeys: 6 }), fc.jsonValue(), (obj, extra) => {
        neverThrows(b(JSON.stringify(obj)));
        neverThrows(b(JSON.stringify({ ...obj, frame: extra })));
        neverThrows(b(JSON.stringify([obj])));
      }),
    );
  });
});
