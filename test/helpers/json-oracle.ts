// JSON oracles written independently of src/protocol/, so the codec tests compare the relay's
// bytes with a second implementation instead of with itself: Go's compaction, deep equality, the
// envelope error texts, and a generator of almost-JSON strings for property tests.

import fc from 'fast-check';

/** Go's json.Marshal of a json.RawMessage (compact + HTML escaping): drop whitespace outside
 * strings; inside strings rewrite < > & as \u003c \u003e \u0026 and U+2028/U+2029 as
 * \u2028/\u2029; copy every other byte. */
export function goCompact(text: string): string {
  let out = '';
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (!inString) {
      if (ch === ' ' || ch === '\n' || ch === '\r' || ch === '\t') continue;
      if (ch === '"') inString = true;
      out += ch;
      continue;
    }
    if (ch === '\\') {
      out += ch + text[i + 1]!;
      i++;
    } else if (ch === '"') {
      inString = false;
      out += ch;
    } else if (ch === '<' || ch === '>' || ch === '&' || ch === '\u2028' || ch === '\u2029') {
      out += '\\u' + ch.charCodeAt(0).toString(16).padStart(4, '0');
    } else {
      out += ch;
    }
  }
  return out;
}

/** Deep equality of two JSON.parse results, iterative (10000-deep values overflow recursive
 * comparers and JSON.stringify). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  const stack: Array<[unknown, unknown]> = [[a, b]];
  while (stack.length > 0) {
    const [x, y] = stack.pop()!;
    if (x === y) continue;
    if (typeof x !== 'object' || typeof y !== 'object' || x === null || y === null) return false;
    if (Array.isArray(x) !== Array.isArray(y)) return false;
    const kx = Object.keys(x);
    const ky = Object.keys(y);
    if (kx.length !== ky.length) return false;
    for (let i = 0; i < kx.length; i++) {
      if (kx[i] !== ky[i]) return false;
      stack.push([(x as Record<string, unknown>)[kx[i]!], (y as Record<string, unknown>)[ky[i]!]]);
    }
  }
  return true;
}

/** Every error text a binary envelope may be refused with (docs/operations.md); nothing else may
 * reach a log line's err field. */
export const ENVELOPE_ERRORS: ReadonlySet<string> = new Set([
  'malformed envelope',
  'envelope is not valid UTF-8',
  'envelope is not a JSON object',
  'conn_id is not a string',
  'close_code is not a uint16',
  'missing conn_id',
  'missing frame',
]);

/** Strings near JSON: arbitrary text, valid JSON, runs of `tokens`, and valid JSON with one
 * character deleted or one token inserted at a random place. */
export function jsonishString(tokens: readonly string[]): fc.Arbitrary<string> {
  return fc.oneof(
    fc.string(),
    fc.json(),
    fc.array(fc.constantFrom(...tokens), { maxLength: 30 }).map((a) => a.join('')),
    fc.tuple(fc.json(), fc.nat(), fc.constantFrom(...tokens), fc.boolean()).map(([j, pos, tok, del]) => {
      const p = pos % (j.length + 1);
      return del ? j.slice(0, p) + j.slice(p + 1) : j.slice(0, p) + tok + j.slice(p);
    }),
  );
}
