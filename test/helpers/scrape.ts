// Reading a Prometheus text exposition (the relay's /metrics): one series' value, every sample of
// a family with its labels, a whole parse into families, and snapshots and diffs of the
// pyrycode_relay_* samples. The series names used by several suites are spelled here once.

import { expect } from 'vitest';
import { waitFor } from './wait.js';

/** The value of the sample whose series text (name plus labels) is exactly `series`. */
export function sampleValue(text: string, series: string): number {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    if (line.slice(0, space) === series) return Number(line.slice(space + 1));
  }
  throw new Error(`series ${series} not in scrape:\n${text}`);
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL_PAIR = /(\w+)="((?:[^"\\]|\\.)*)"/g;

/** Every sample line of a scrape, in order; throws on a line that is neither a sample nor a comment. */
export function parseSamples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = SAMPLE_LINE.exec(line);
    if (m === null) throw new Error(`unparsed scrape line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL_PAIR)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** Every sample of exactly this series name (no _bucket/_sum suffix matching): labels and value. */
export function samples(text: string, name: string): Omit<Sample, 'name'>[] {
  return parseSamples(text)
    .filter((s) => s.name === name)
    .map((s) => ({ labels: s.labels, value: s.value }));
}

export interface Family {
  help: string;
  type: string;
  samples: Map<string, number>;
}

/** Parses the text exposition into families (HELP, TYPE, samples by series text); throws on
 * anything malformed, including a missing final newline. */
export function parseExposition(text: string): Map<string, Family> {
  if (!text.endsWith('\n'))
    throw new Error(`exposition does not end with a newline: ${JSON.stringify(text.slice(-80))}`);
  const families = new Map<string, Family>();
  const family = (name: string): Family => {
    let f = families.get(name);
    if (f === undefined) {
      f = { help: '', type: '', samples: new Map() };
      families.set(name, f);
    }
    return f;
  };
  for (const line of text.slice(0, -1).split('\n')) {
    let m = /^# HELP (\S+) (.*)$/.exec(line);
    if (m) {
      family(m[1]!).help = m[2]!;
      continue;
    }
    m = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (m) {
      family(m[1]!).type = m[2]!;
      continue;
    }
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`malformed exposition line: ${line}`);
    family(m[1]!).samples.set(m[1]! + (m[2] ?? ''), Number(m[3]));
  }
  return families;
}

// ---- Snapshots and diffs of the pyrycode_relay_* samples ----

/** Every `pyrycode_relay_*` sample of a scrape, keyed by series text (name plus labels). */
export function relaySamples(scrape: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of scrape.split('\n')) {
    if (!line.startsWith('pyrycode_relay_')) continue;
    const space = line.lastIndexOf(' ');
    out.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return out;
}

/** The relay samples of whatever can be scraped right now (a TestRelay, a daemon client...). */
export async function snapshot(source: { scrape(): Promise<string> }): Promise<Map<string, number>> {
  return relaySamples(await source.scrape());
}

/** Series whose value differs between two snapshots: series -> after - before. */
export function sampleDiff(before: Map<string, number>, after: Map<string, number>): Record<string, number> {
  const diff: Record<string, number> = {};
  for (const [series, value] of after) {
    const d = value - (before.get(series) ?? 0);
    if (d !== 0) diff[series] = d;
  }
  for (const series of before.keys()) if (!after.has(series)) diff[series] = Number.NaN;
  return diff;
}

/** The reference relay's families (docs/metrics.md, "The series"; the reference relay's contract). Everything else
 * under pyrycode_relay_* is this project's own operator signals (docs/metrics.md). */
export const REFERENCE_FAMILIES = [
  'pyrycode_relay_connected_binaries',
  'pyrycode_relay_connected_phones',
  'pyrycode_relay_frames_forwarded_total',
  'pyrycode_relay_grace_expiries_total',
  'pyrycode_relay_ws_upgrade_attempts_total',
  'pyrycode_relay_register_failures_total',
  'pyrycode_relay_push_wakes_total',
];

function familyOf(series: string): string {
  const brace = series.indexOf('{');
  return brace < 0 ? series : series.slice(0, brace);
}

/** A diff split into the reference families and the operator-signal families. */
export function splitDiff(diff: Record<string, number>): {
  reference: Record<string, number>;
  extra: Record<string, number>;
} {
  const reference: Record<string, number> = {};
  const extra: Record<string, number> = {};
  for (const [series, d] of Object.entries(diff)) {
    if (REFERENCE_FAMILIES.includes(familyOf(series))) reference[series] = d;
    else extra[series] = d;
  }
  return { reference, extra };
}

/** The cells of one family in a diff. */
export function familyDiff(diff: Record<string, number>, family: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [series, d] of Object.entries(diff)) if (familyOf(series) === family) out[series] = d;
  return out;
}

// ---- Series names ----

export type Endpoint = 'server' | 'client';
export const UPGRADE_OUTCOMES = [
  'accept',
  'reject_headers',
  'reject_409',
  'reject_404',
  'reject_429',
  'reject_rate_limit',
] as const;
export type UpgradeOutcome = (typeof UPGRADE_OUTCOMES)[number];
export const REGISTER_KINDS = ['no_server', 'server_in_use', 'phones_at_cap', 'ratelimit'] as const;
export type RegisterKind = (typeof REGISTER_KINDS)[number];

export const upgradeCell = (endpoint: Endpoint, outcome: UpgradeOutcome): string =>
  `pyrycode_relay_ws_upgrade_attempts_total{endpoint="${endpoint}",outcome="${outcome}"}`;
export const registerCell = (kind: RegisterKind): string => `pyrycode_relay_register_failures_total{kind="${kind}"}`;
export const httpErrorCell = (reason: string): string => `pyrycode_relay_http_errors_total{reason="${reason}"}`;
export const rejectionCell = (endpoint: Endpoint, reason: string): string =>
  `pyrycode_relay_upgrade_rejections_total{endpoint="${endpoint}",reason="${reason}"}`;
export const closedCell = (endpoint: Endpoint, reason: string): string =>
  `pyrycode_relay_connections_closed_total{endpoint="${endpoint}",reason="${reason}"}`;

export const B2P = 'pyrycode_relay_frames_forwarded_total{direction="binary_to_phone"}';
export const P2B = 'pyrycode_relay_frames_forwarded_total{direction="phone_to_binary"}';
export const GAUGE_BINARIES = 'pyrycode_relay_connected_binaries';
export const GAUGE_PHONES = 'pyrycode_relay_connected_phones';
export const GRACE_EXPIRIES = 'pyrycode_relay_grace_expiries_total';
export const HTTP_ERRORS = 'pyrycode_relay_http_errors_total';
export const UPGRADE_REJECTIONS = 'pyrycode_relay_upgrade_rejections_total';
export const CONNECTIONS_CLOSED = 'pyrycode_relay_connections_closed_total';

// ---- The control-plane counters ----

/** Every cell of the reference relay's control-plane counters: upgrade attempts, register failures
 * and grace expiries. */
export const COUNTER_SERIES: readonly string[] = [
  ...(['server', 'client'] as const).flatMap((e) => UPGRADE_OUTCOMES.map((o) => upgradeCell(e, o))),
  ...REGISTER_KINDS.map(registerCell),
  GRACE_EXPIRIES,
];

/** The value of every control-plane counter cell in a scrape. */
export function counterSnapshot(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of COUNTER_SERIES) out[s] = sampleValue(text, s);
  return out;
}

/** Every control-plane counter cell equals `expected` (cells not named must be 0). Polls up to 2 s
 * (reject increments may land just after the peer saw the close), then asserts exactly. */
export async function expectCounters(
  source: { scrape(): Promise<string> },
  expected: Record<string, number>,
): Promise<void> {
  const want: Record<string, number> = {};
  for (const s of COUNTER_SERIES) want[s] = 0;
  for (const [k, v] of Object.entries(expected)) {
    if (!(k in want)) throw new Error(`unknown series ${k}`);
    want[k] = v;
  }
  let last: Record<string, number> = {};
  try {
    await waitFor(
      async () => {
        last = counterSnapshot(await source.scrape());
        return COUNTER_SERIES.every((s) => last[s] === want[s]);
      },
      2_000,
      'counter cells',
    );
  } catch {
    // fall through to the exact assertion for a readable diff
  }
  expect(last).toEqual(want);
}
