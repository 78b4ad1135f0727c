// Go `time.Duration` syntax for command-line flags: parse to milliseconds, format like Go's
// Duration.String().
//
// Parsing follows Go's time.ParseDuration: `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, units ns, us, µs
// (U+00B5 or U+03BC), ms, s, m, h; "0" (optionally signed) is the only unit-less value. Integer
// parts are exact (BigInt nanoseconds); fractions are computed in float64 and truncated to whole
// nanoseconds exactly as Go does, so results match Go to the nanosecond; anything beyond Go's
// int64 nanosecond range (~292 years) is invalid.

const NS_PER_MS = 1_000_000n;
const MAX_NS = (1n << 63n) - 1n; // Go's Duration is an int64 of nanoseconds.

const UNIT_NS: ReadonlyMap<string, bigint> = new Map<string, bigint>([
  ['ns', 1n],
  ['us', 1_000n],
  ['\u00b5s', 1_000n], // µ MICRO SIGN
  ['\u03bcs', 1_000n], // μ GREEK SMALL LETTER MU
  ['ms', 1_000_000n],
  ['s', 1_000_000_000n],
  ['m', 60_000_000_000n],
  ['h', 3_600_000_000_000n],
]);

const isDigit = (c: string): boolean => c >= '0' && c <= '9';

/** Go's leadingFraction: digits accumulate until the next one would overflow int64, then are ignored. */
function leadingFraction(digits: string): { x: bigint; scale: number } {
  let x = 0n;
  let scale = 1;
  for (const c of digits) {
    if (x > MAX_NS / 10n) break;
    const y = x * 10n + BigInt(c.charCodeAt(0) - 48);
    if (y > MAX_NS + 1n) break;
    x = y;
    scale *= 10;
  }
  return { x, scale };
}

/** Parses a Go duration string to nanoseconds, or null when it is not valid Go syntax. */
export function parseDurationNs(s: string): bigint | null {
  let rest = s;
  let neg = false;
  if (rest !== '' && (rest[0] === '-' || rest[0] === '+')) {
    neg = rest[0] === '-';
    rest = rest.slice(1);
  }
  if (rest === '0') return 0n;
  if (rest === '') return null;

  let total = 0n;
  while (rest !== '') {
    // The next character must be [0-9.]
    if (!(rest[0] === '.' || isDigit(rest[0]!))) return null;
    let i = 0;
    while (i < rest.length && isDigit(rest[i]!)) i++;
    const intDigits = rest.slice(0, i);
    let fracDigits = '';
    if (i < rest.length && rest[i] === '.') {
      i++;
      const start = i;
      while (i < rest.length && isDigit(rest[i]!)) i++;
      fracDigits = rest.slice(start, i);
    }
    if (intDigits === '' && fracDigits === '') return null; // e.g. ".s"
    rest = rest.slice(i);

    // Unit: everything up to the next '.' or digit.
    let j = 0;
    while (j < rest.length && rest[j] !== '.' && !isDigit(rest[j]!)) j++;
    if (j === 0) return null; // missing unit
    const unit = UNIT_NS.get(rest.slice(0, j));
    if (unit === undefined) return null; // unknown unit
    rest = rest.slice(j);

    let v = intDigits === '' ? 0n : BigInt(intDigits) * unit;
    const frac = leadingFraction(fracDigits);
    if (frac.x > 0n) {
      // Go: v += uint64(float64(f) * (float64(unit) / scale)), i.e. in float64 and truncated.
      v += BigInt(Math.trunc(Number(frac.x) * (Number(unit) / frac.scale)));
    }
    total += v;
    if (total > MAX_NS + 1n) return null; // overflow (Go allows exactly 1<<63 only when negative)
  }
  if (!neg && total > MAX_NS) return null;
  return neg ? -total : total;
}

/**
 * Parses a Go duration (`300ms`, `-1.5h`, `2h45m`, `1µs`) to milliseconds. The result may be
 * fractional (`250us` → 0.25). Returns null for anything Go's time.ParseDuration rejects.
 */
export function parseDuration(s: string): number | null {
  const ns = parseDurationNs(s);
  if (ns === null) return null;
  if (ns === 0n) return 0; // never -0
  const whole = ns / NS_PER_MS;
  const rem = ns % NS_PER_MS;
  return Number(whole) + Number(rem) / 1e6;
}

/** Renders v / 10^prec (v >= 0) with trailing fractional zeros dropped, like Go's fmtFrac. */
function fracString(v: bigint, prec: number): string {
  const scale = 10n ** BigInt(prec);
  const intPart = v / scale;
  let frac = (v % scale).toString().padStart(prec, '0').replace(/0+$/, '');
  if (frac !== '') frac = '.' + frac;
  return intPart.toString() + frac;
}

/** Go's Duration.String() for a nanosecond count: `0s`, `250ms`, `1.5µs`, `1m30s`, `1h0m0s`. */
export function formatDurationNs(ns: bigint): string {
  const neg = ns < 0n;
  const u = neg ? -ns : ns;
  let out: string;
  if (u === 0n) {
    out = '0s';
  } else if (u < 1_000n) {
    out = `${u}ns`;
  } else if (u < 1_000_000n) {
    out = `${fracString(u, 3)}\u00b5s`;
  } else if (u < 1_000_000_000n) {
    out = `${fracString(u, 6)}ms`;
  } else {
    const secNs = u % 60_000_000_000n;
    const totalMin = u / 60_000_000_000n;
    out = `${fracString(secNs, 9)}s`;
    if (totalMin > 0n) {
      out = `${totalMin % 60n}m` + out;
      const hours = totalMin / 60n;
      if (hours > 0n) out = `${hours}h` + out;
    }
  }
  return neg && u !== 0n ? '-' + out : out;
}

/**
 * Go-like rendering of a millisecond count (rounded to the nearest nanosecond): `30s`, `1m30s`,
 * `250ms`, `1h0m0s`. Used in help text and docs. Throws RangeError for NaN or infinities.
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) throw new RangeError(`formatDuration: not a finite number of milliseconds`);
  // Split to keep integer milliseconds exact even beyond 2^53 nanoseconds.
  const wholeMs = Math.trunc(ms);
  const fracNs = Math.round((ms - wholeMs) * 1e6);
  return formatDurationNs(BigInt(wholeMs) * NS_PER_MS + BigInt(fracNs));
}
