import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { formatDuration, formatDurationNs, parseDuration, parseDurationNs } from '../src/duration.js';

const NS = 1n;
const US = 1_000n;
const MS = 1_000_000n;
const S = 1_000_000_000n;
const M = 60n * S;
const H = 60n * M;

describe('parseDuration: Go time.ParseDuration examples (nanoseconds)', () => {
  // The valid cases of Go's time_test.go parseDurationTests.
  it.each<[string, bigint]>([
    ['0', 0n],
    ['5s', 5n * S],
    ['30s', 30n * S],
    ['1478s', 1478n * S],
    ['-5s', -5n * S],
    ['+5s', 5n * S],
    ['-0', 0n],
    ['+0', 0n],
    ['5.0s', 5n * S],
    ['5.6s', 5n * S + 600n * MS],
    ['5.s', 5n * S],
    ['.5s', 500n * MS],
    ['1.0s', 1n * S],
    ['1.00s', 1n * S],
    ['1.004s', 1n * S + 4n * MS],
    ['1.0040s', 1n * S + 4n * MS],
    ['100.00100s', 100n * S + 1n * MS],
    ['10ns', 10n * NS],
    ['11us', 11n * US],
    ['12\u00b5s', 12n * US],
    ['12\u03bcs', 12n * US],
    ['13ms', 13n * MS],
    ['14s', 14n * S],
    ['15m', 15n * M],
    ['16h', 16n * H],
    ['3h30m', 3n * H + 30n * M],
    ['10.5s4m', 4n * M + 10n * S + 500n * MS],
    ['-2m3.4s', -(2n * M + 3n * S + 400n * MS)],
    ['1h2m3s4ms5us6ns', 1n * H + 2n * M + 3n * S + 4n * MS + 5n * US + 6n * NS],
    ['39h9m14.425s', 39n * H + 9n * M + 14n * S + 425n * MS],
    ['52763797000ns', 52763797000n * NS],
    ['0.3333333333333333333h', 20n * M],
    ['9007199254740993ns', (1n << 53n) + 1n],
    ['9223372036854775807ns', (1n << 63n) - 1n],
    ['9223372036854775.807us', (1n << 63n) - 1n],
    ['9223372036s854ms775us807ns', (1n << 63n) - 1n],
    ['-9223372036854775808ns', -(1n << 63n)],
    ['-9223372036854775807ns', -((1n << 63n) - 1n)],
    ['0.100000000000000000000h', 6n * M],
    ['0.830103483285477580700h', 49n * M + 48n * S + 372539827n * NS],
  ])('%j → %d ns', (input, ns) => {
    expect(parseDurationNs(input)).toBe(ns);
  });
});

describe('parseDuration: milliseconds', () => {
  it.each<[string, number]>([
    ['0', 0],
    ['-0', 0],
    ['1.5ms', 1.5],
    ['250us', 0.25],
    ['250\u00b5s', 0.25],
    ['1ns', 0.000001],
    ['30s', 30_000],
    ['1m30s', 90_000],
    ['1h', 3_600_000],
    ['-1.5h', -5_400_000],
    ['24h', 86_400_000],
    ['6s', 6_000],
  ])('%j → %d ms', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  it('never returns -0', () => {
    expect(Object.is(parseDuration('-0'), 0)).toBe(true);
    expect(Object.is(parseDuration('-0s'), 0)).toBe(true);
  });

  // Go's invalid cases plus a few a shell or a config file could produce.
  it.each([
    '',
    '3',
    '-',
    '+',
    's',
    '.',
    '-.',
    '.s',
    '+.s',
    '1d',
    '1S',
    '1sec',
    '1 s',
    ' 1s',
    '1s ',
    '1e3s',
    '0x10s',
    '--1s',
    '+-1s',
    '1s2',
    '00',
    '0.0',
    '\u0085\u0085',
    '\u00ffff',
    'hello \u00ffff world',
    '9223372036854775808ns',
    '9223372036854775810ns',
    '-9223372036854775809ns',
    '9223372036854775.808us',
    '3000000h',
    '1.5.s',
    '1..5s',
  ])('%j is invalid', (input) => {
    expect(parseDuration(input)).toBeNull();
    expect(parseDurationNs(input)).toBeNull();
  });
});

describe('formatDuration', () => {
  // Go's Duration.String examples.
  it.each<[bigint, string]>([
    [0n, '0s'],
    [1n * NS, '1ns'],
    [1100n * NS, '1.1\u00b5s'],
    [2200n * US, '2.2ms'],
    [3300n * MS, '3.3s'],
    [4n * M + 5n * S, '4m5s'],
    [4n * M + 5001n * MS, '4m5.001s'],
    [5n * H + 6n * M + 7001n * MS, '5h6m7.001s'],
    [8n * M + 1n * NS, '8m0.000000001s'],
    [(1n << 63n) - 1n, '2562047h47m16.854775807s'],
    [-(1n << 63n), '-2562047h47m16.854775808s'],
    [-5n * S, '-5s'],
  ])('%d ns → %j', (ns, text) => {
    expect(formatDurationNs(ns)).toBe(text);
  });

  it.each<[number, string]>([
    [30_000, '30s'],
    [90_000, '1m30s'],
    [250, '250ms'],
    [3_600_000, '1h0m0s'],
    [86_400_000, '24h0m0s'],
    [6_000, '6s'],
    [10_000, '10s'],
    [1.5, '1.5ms'],
    [0.25, '250\u00b5s'],
    [0.000001, '1ns'],
    [0, '0s'],
    [-0, '0s'],
    [-5_000, '-5s'],
    [1, '1ms'],
  ])('%d ms → %j', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it('rejects non-finite input', () => {
    expect(() => formatDuration(Number.NaN)).toThrow(RangeError);
    expect(() => formatDuration(Number.POSITIVE_INFINITY)).toThrow(RangeError);
  });

  it('round-trips through parseDurationNs for every int64 nanosecond count', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }), (ns) => {
        expect(parseDurationNs(formatDurationNs(ns))).toBe(ns);
      }),
      { numRuns: 2000 },
    );
  });

  it('round-trips whole milliseconds through parseDuration', () => {
    fc.assert(
      fc.property(fc.integer({ min: -1e12, max: 1e12 }), (ms) => {
        expect(parseDuration(formatDuration(ms))).toBe(ms === 0 ? 0 : ms);
      }),
      { numRuns: 2000 },
    );
  });
});
