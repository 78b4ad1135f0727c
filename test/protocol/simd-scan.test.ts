// The SIMD string loop (src/protocol/simd-scan.ts) must change nothing but speed: for long
// buffers, every scan result and every statistic with the buffer mirrored equals the JavaScript
// loop's, whatever bytes sit where (block edges, the partial tail, the byte after a quote).

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type CompactStats,
  MAX_JSON_DEPTH,
  SIMD_MIN_BYTES,
  endMirror,
  mirrorForScan,
  scanString,
  scanValue,
} from '../../src/protocol/json.js';
import { simdScanner } from '../../src/protocol/simd-scan.js';

/** Bytes a string scan must stop at, plain ones, and multi-byte UTF-8 around 0xE2. */
const INTERESTING = [0x00, 0x1f, 0x20, 0x21, 0x22, 0x5c, 0x3c, 0x3e, 0x26, 0xe2, 0x80, 0xa8, 0xa9, 0x61, 0x7f, 0xff];

function scanBoth(buf: Uint8Array): { js: number[]; simd: number[] } {
  const run = (): number[] => {
    const stats: CompactStats = { spaces: 0, htmlExtra: 0 };
    const e = scanValue(buf, 0, buf.length, MAX_JSON_DEPTH, stats);
    return [e, stats.spaces, stats.htmlExtra, scanString(buf, 0, buf.length)];
  };
  const js = run();
  mirrorForScan(buf);
  try {
    return { js, simd: run() };
  } finally {
    endMirror();
  }
}

describe('SIMD string scan', () => {
  it('is available on this Node (otherwise the relay silently runs the slower loop)', () => {
    expect(simdScanner).not.toBeNull();
  });

  it('finds the same end, spaces and HTML growth as the JavaScript loop (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: SIMD_MIN_BYTES, max: 3 * SIMD_MIN_BYTES }),
        fc.array(fc.tuple(fc.nat(), fc.constantFrom(...INTERESTING)), { maxLength: 12 }),
        (length, edits) => {
          // A long string value: `"aaaa…"`, then a few bytes changed anywhere in it.
          const buf = Buffer.alloc(length, 0x61);
          buf[0] = 0x22;
          buf[length - 1] = 0x22;
          for (const [pos, byte] of edits) buf[1 + (pos % (length - 2))] = byte;
          const { js, simd } = scanBoth(buf);
          expect(simd).toEqual(js);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('stops at a special byte in every lane of a block and in the tail', () => {
    for (const byte of INTERESTING) {
      for (let pos = 1; pos < 200; pos++) {
        const buf = Buffer.alloc(SIMD_MIN_BYTES + 37, 0x61);
        buf[0] = 0x22;
        buf[buf.length - 1] = 0x22;
        buf[buf.length - 1 - pos] = byte;
        const { js, simd } = scanBoth(buf);
        expect(simd).toEqual(js);
      }
    }
  });

  it('classifies every byte value alike in every lane of a 64-byte group (the loop tests four blocks at once)', () => {
    // The SIMD loop classifies a byte by its two nibbles: a byte that shares a nibble with a
    // special one (0x2C, 0x32, 0x5E, 0xE6, 0x12, ...) must not be mistaken for it, nor the reverse.
    const buf = Buffer.alloc(SIMD_MIN_BYTES + 64, 0x61);
    buf[0] = 0x22;
    buf[buf.length - 1] = 0x22;
    for (let byte = 0; byte < 256; byte++) {
      for (let lane = 0; lane < 64; lane++) {
        const pos = 1 + 64 * 8 + lane;
        buf[pos] = byte;
        const { js, simd } = scanBoth(buf);
        buf[pos] = 0x61;
        if (simd.join() !== js.join()) expect({ byte, lane, simd }).toEqual({ byte, lane, simd: js });
      }
    }
  });

  it('agrees on long documents of many strings, objects and arrays', () => {
    const doc = Buffer.from(
      JSON.stringify({ a: 'x'.repeat(3000), b: ['<tag>', 'y'.repeat(70), { 'k\u2028': 'a&b'.repeat(400) }] }),
    );
    const { js, simd } = scanBoth(doc);
    expect(simd).toEqual(js);
    expect(js[0]).toBe(doc.length);
  });
});
