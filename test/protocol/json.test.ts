import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  type CompactStats,
  MAX_JSON_DEPTH,
  decodeString,
  isNullLiteral,
  scanString,
  scanValue,
  skipWhitespace,
  writeCompact,
} from '../../src/protocol/json.js';
import { jsonishString } from '../helpers/json-oracle.js';

const b = (s: string): Buffer => Buffer.from(s, 'utf8');

/** True when the whole buffer is exactly one JSON value with optional surrounding whitespace. */
function isWholeValue(buf: Uint8Array): boolean {
  const e = scanValue(buf, 0);
  return e >= 0 && skipWhitespace(buf, e) === buf.length;
}

/** Compact + HTML-escape via the public API, as envelope.ts does. */
function compact(s: string): string {
  const buf = b(s);
  const stats: CompactStats = { spaces: -1, htmlExtra: -1 };
  const vs = skipWhitespace(buf, 0);
  const ve = scanValue(buf, vs, buf.length, MAX_JSON_DEPTH, stats);
  expect(ve).toBeGreaterThanOrEqual(0);
  const out = Buffer.alloc(ve - vs - stats.spaces + stats.htmlExtra);
  expect(writeCompact(buf, vs, ve, out, 0)).toBe(out.length); // stats predict the exact size
  return out.toString('utf8');
}

/** A nesting of `depth` arrays: [[…]]. */
const nested = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth);

// Strings made of JSON-ish tokens: mostly near-valid, so both outcomes are exercised.
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
  '+',
  '.',
  'e',
  'E',
  'true',
  'false',
  'null',
  'tru',
  ' ',
  '\n',
  '\t',
  '\r',
  '\f',
  '\v',
  '\u00a0',
  'x',
  'a',
  '<',
  '&',
  '\u2028',
  '\u0001',
  '\u0000',
  'é',
  '😀',
  '\\u00',
  '\\n',
  '\\"',
  '"k":',
  '01',
  '\\ud800',
];
const jsonish = jsonishString(TOKENS);

describe('scanValue: grammar (Go encoding/json)', () => {
  const valid = [
    '0',
    '-0',
    '12345678901234567890',
    '-1.5e+10',
    '1E-2',
    '0.0',
    'true',
    'false',
    'null',
    '""',
    '"a\\"b\\\\c\\/d\\b\\f\\n\\r\\t"',
    '"\\u12aB"',
    '"\\ud800"',
    '"\\udc00\\ud800"',
    '"é😀\u2028"',
    '[]',
    '{}',
    '[1,[2,{"a":[]}]]',
    '{"a":1,"a":2}',
    ' \t\r\n[ 1 , 2 ]\n',
    '{ "a" : { "b" : [ true , null ] } }',
  ];
  for (const s of valid) {
    it(`accepts ${JSON.stringify(s)}`, () => {
      expect(isWholeValue(b(s))).toBe(true);
    });
  }

  const invalid = [
    '',
    ' ',
    '01',
    '00',
    '+1',
    '.5',
    '1.',
    '1.e5',
    '1e',
    '1e+',
    '-',
    '--1',
    '0x10',
    'NaN',
    'Infinity',
    'tru',
    'nul',
    'True',
    'nulll',
    '"\\x"',
    '"\\u12"',
    '"\\u12g4"',
    '"\\U0041"',
    '"abc',
    '"a\u0001"',
    '"a\nb"',
    '"\t"',
    '[1,]',
    '[,1]',
    '[1 2]',
    '{"a":1,}',
    '{"a"}',
    '{"a" 1}',
    '{1:2}',
    "{'a':1}",
    '[',
    ']',
    '{',
    '}',
    '[1]]',
    '{"a":1}}',
    '\u00a01',
    '\f1',
    '\v1',
    '1 2',
    '{"a":1} x',
    '"\\',
  ];
  for (const s of invalid) {
    it(`rejects ${JSON.stringify(s)}`, () => {
      expect(isWholeValue(b(s))).toBe(false);
    });
  }

  it('returns the end of the first value and does not consume trailing whitespace', () => {
    expect(scanValue(b('  [1, 2]  x'), 0)).toBe(8);
    expect(scanValue(b('01'), 0)).toBe(1); // "0" is a value; the "1" is the caller's trailing garbage
    expect(scanValue(b('truex'), 0)).toBe(4);
    expect(scanValue(b('xx 7 '), 2)).toBe(4);
  });

  it('honours the end bound', () => {
    expect(scanValue(b('[1,2]'), 0, 4)).toBe(-1);
    expect(scanValue(b('123456'), 0, 3)).toBe(3);
    expect(scanValue(b('"\\u00412"'), 0, 6)).toBe(-1); // \u escape cut by the bound
  });

  it('rejects bytes that are not JSON even when they look like Unicode whitespace', () => {
    expect(isWholeValue(Buffer.from([0xef, 0xbb, 0xbf, 0x31]))).toBe(false); // BOM
  });

  it('passes non-UTF-8 bytes inside strings through (UTF-8 is validated separately)', () => {
    expect(isWholeValue(Buffer.from([0x22, 0xff, 0xfe, 0x22]))).toBe(true);
    expect(isWholeValue(Buffer.from([0xff]))).toBe(false); // but not outside strings
  });
});

describe('scanValue: nesting depth', () => {
  it(`accepts exactly ${MAX_JSON_DEPTH} levels and rejects ${MAX_JSON_DEPTH + 1}`, () => {
    expect(isWholeValue(b(nested(MAX_JSON_DEPTH)))).toBe(true);
    expect(isWholeValue(b(nested(MAX_JSON_DEPTH + 1)))).toBe(false);
    const objs = (d: number) => '{"a":'.repeat(d - 1) + '{}' + '}'.repeat(d - 1);
    expect(isWholeValue(b(objs(MAX_JSON_DEPTH)))).toBe(true);
    expect(isWholeValue(b(objs(MAX_JSON_DEPTH + 1)))).toBe(false);
  });

  it('applies a caller-supplied depth limit', () => {
    expect(scanValue(b(nested(3)), 0, 6, 3)).toBe(6);
    expect(scanValue(b(nested(3)), 0, 6, 2)).toBe(-1);
    expect(scanValue(b('1'), 0, 1, 0)).toBe(1); // scalars need no depth
  });

  it('is iterative: 256 KiB of "[" neither throws nor overflows the stack', () => {
    const buf = Buffer.alloc(256 * 1024, '[');
    expect(scanValue(buf, 0)).toBe(-1);
    // Deep but within the limit, followed by lots of closing brackets: still fine.
    expect(() => scanValue(Buffer.alloc(256 * 1024, ']'), 0)).not.toThrow();
  });

  it('resets container state between calls', () => {
    expect(scanValue(b('{"a":[[['), 0)).toBe(-1);
    expect(isWholeValue(b('[1]'))).toBe(true);
    expect(isWholeValue(b('{"a":1}'))).toBe(true);
  });
});

describe('scanString / skipWhitespace / isNullLiteral', () => {
  it('scanString returns the index past the closing quote', () => {
    expect(scanString(b('x"ab\\"c"y'), 1)).toBe(8);
    expect(scanString(b('"abc'), 0)).toBe(-1);
    expect(scanString(b('abc"'), 0)).toBe(-1); // must start at a quote
  });

  it('skipWhitespace skips only space, tab, LF, CR', () => {
    expect(skipWhitespace(b(' \t\r\n x'), 0)).toBe(5);
    expect(skipWhitespace(b('\f'), 0)).toBe(0);
    expect(skipWhitespace(b('   '), 1, 2)).toBe(2);
  });

  it('isNullLiteral', () => {
    expect(isNullLiteral(b(' null '), 1, 5)).toBe(true);
    expect(isNullLiteral(b('nul'), 0, 3)).toBe(false);
    expect(isNullLiteral(b('"null"'), 0, 6)).toBe(false);
  });
});

describe('compaction and HTML escaping (Go appendCompact, escapeHTML)', () => {
  it('counts whitespace and escape growth', () => {
    const stats: CompactStats = { spaces: 0, htmlExtra: 0 };
    const buf = b(' { "a<" : [ 1 ,\n2 ] , "b" : "&\u2028\u2029>" } ');
    const ve = scanValue(buf, 0, buf.length, MAX_JSON_DEPTH, stats);
    expect(ve).toBe(buf.length - 1);
    expect(stats).toEqual({ spaces: 12, htmlExtra: 5 + 5 + 3 + 3 + 5 });
  });

  it('resets stats on every call', () => {
    const stats: CompactStats = { spaces: 99, htmlExtra: 99 };
    scanValue(b('[1]'), 0, 3, MAX_JSON_DEPTH, stats);
    expect(stats).toEqual({ spaces: 0, htmlExtra: 0 });
  });

  it('removes whitespace only outside strings and escapes only <>& U+2028 U+2029', () => {
    expect(compact('{ "a b" : [ 1 , 2 ] ,\n\t"c" : "x < y && z > 0" }')).toBe(
      '{"a b":[1,2],"c":"x \\u003c y \\u0026\\u0026 z \\u003e 0"}',
    );
    expect(compact('"\u2028|\u2029|\u2027|\u202a|\u00e2"')).toBe('"\\u2028|\\u2029|\u2027|\u202a|\u00e2"');
    expect(compact('"\\"<\\\\" ')).toBe('"\\"\\u003c\\\\"');
    expect(compact('"\\u003c<"')).toBe('"\\u003c\\u003c"'); // existing escapes are left as they are
    expect(compact('[ 1.50E+3 , -0 , 12345678901234567890 ]')).toBe('[1.50E+3,-0,12345678901234567890]');
  });

  it('keeps a lone E2 byte that does not start U+2028/9', () => {
    const buf = Buffer.from([0x22, 0xe2, 0x80, 0xaa, 0x22]); // U+202A
    const out = Buffer.alloc(5);
    expect(writeCompact(buf, 0, 5, out, 0)).toBe(5);
    expect(out).toEqual(buf);
  });

  it('matches JSON.stringify + HTML escaping for pretty-printed values (property)', () => {
    const esc = (s: string) =>
      s.replace(/[<>&\u2028\u2029]/g, (ch) => '\\u' + ch.charCodeAt(0).toString(16).padStart(4, '0'));
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        expect(compact(JSON.stringify(v, null, 2))).toBe(esc(JSON.stringify(v)));
      }),
    );
  });
});

describe('decodeString (Go unquote)', () => {
  const dec = (s: string) => {
    const buf = b(s);
    const e = scanString(buf, 0);
    expect(e).toBe(buf.length);
    return decodeString(buf, 0, e);
  };

  it('fast paths: ASCII and raw UTF-8', () => {
    expect(dec('""')).toBe('');
    expect(dec('"client-abc"')).toBe('client-abc');
    expect(dec('"é😀\u2028"')).toBe('é😀\u2028');
  });

  it('decodes every escape', () => {
    expect(dec('"\\"\\\\\\/\\b\\f\\n\\r\\t"')).toBe('"\\/\b\f\n\r\t');
    expect(dec('"a\\u0041\\u00e9\\u20AC!é"')).toBe('aAé€!é');
    expect(dec('"\\u0000"')).toBe('\u0000');
  });

  it('surrogates: pairs combine, anything else becomes U+FFFD like Go', () => {
    expect(dec('"\\ud83d\\ude00"')).toBe('😀');
    expect(dec('"\\ud83d"')).toBe('\ufffd');
    expect(dec('"\\ude00"')).toBe('\ufffd');
    expect(dec('"\\ude00\\ud83d"')).toBe('\ufffd\ufffd');
    expect(dec('"\\udc00\\udc00"')).toBe('\ufffd\ufffd'); // low+low is not a pair
    expect(dec('"\\ud83dx"')).toBe('\ufffdx');
    expect(dec('"\\ud83d\\u0041"')).toBe('\ufffdA');
    expect(dec('"\\ud83d\\ud83d\\ude00"')).toBe('\ufffd😀');
  });

  it('agrees with JSON.parse on well-formed strings (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (s) => {
        expect(dec(JSON.stringify(s))).toBe(s);
      }),
    );
  });
});

describe('scanValue vs JSON.parse (property)', () => {
  it('accepts exactly what JSON.parse accepts (shallow inputs)', () => {
    fc.assert(
      fc.property(jsonish, (s) => {
        let ok = true;
        try {
          JSON.parse(s);
        } catch {
          ok = false;
        }
        expect(isWholeValue(b(s))).toBe(ok);
      }),
      { numRuns: 3000 },
    );
  });

  it('never throws on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(), (bytes, start) => {
        const buf = Buffer.from(bytes);
        const r = scanValue(buf, start % (buf.length + 1));
        expect(r >= -1 && r <= buf.length).toBe(true);
      }),
    );
  });
});
