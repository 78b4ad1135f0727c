// The Prometheus side of the operator kit (docs/ops/), proven with the tools that consume it:
// - promtool checks prometheus.yml (which loads alerts.yml), checks the rules, and runs the alert
//   unit tests in alerts.test.yml;
// - every Grafana query parses (promtool, as recording rules) and names only series the relay
//   exports, with label values it can actually produce;
// - a real Prometheus runs the shipped prometheus.yml against a live relay: every alert loads and
//   stays quiet on a healthy relay, and every dashboard query returns data.
// The exported series are not a hand-written list: they come from a scrape of a real relay after
// traffic that makes every family appear (the runtime series registered as --metrics-runtime does).
// .ci/run installs Debian's `prometheus` (prometheus + promtool). Without it these tests are skipped
// locally and fail in CI.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerRuntimeMetrics } from '../../src/metrics/runtime.js';
import { freePort } from '../helpers/daemon.js';
import {
  connectBinary,
  connectPhone,
  phoneConnId,
  startRelay,
  type TestClient,
  type TestRelay,
} from '../helpers/relay.js';
import { waitFor } from '../helpers/wait.js';

const OPS = fileURLToPath(new URL('../../docs/ops/', import.meta.url));
const PROMETHEUS_YML = join(OPS, 'prometheus.yml');
const ALERTS_YML = join(OPS, 'alerts.yml');
const ALERTS_TEST_YML = join(OPS, 'alerts.test.yml');
const DASHBOARD_JSON = join(OPS, 'grafana-dashboard.json');
const SPAWN_TIMEOUT_MS = 15_000;
const JOB = 'pyrycode-relay';

const toolWorks = (cmd: string): boolean => spawnSync(cmd, ['--version'], { timeout: SPAWN_TIMEOUT_MS }).status === 0;
const hasPromtool = toolWorks('promtool');
const hasPrometheus = toolWorks('prometheus');

function run(cmd: string, args: string[]): { status: number | null; output: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: SPAWN_TIMEOUT_MS });
  return { status: r.status, output: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

// ---------------------------------------------------------------------------------------------
// What the relay exports: series name -> label name -> values seen
// ---------------------------------------------------------------------------------------------

type Inventory = Map<string, Map<string, Set<string>>>;
/** Labels Prometheus attaches to every scraped series (and the collector path writes too). */
const TARGET_LABELS = new Set(['job', 'instance']);

function inventoryOf(scrape: string): Inventory {
  const inventory: Inventory = new Map();
  for (const line of scrape.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+\S+$/.exec(line);
    if (m === null) throw new Error(`unparsed scrape line: ${line}`);
    let labels = inventory.get(m[1]!);
    if (labels === undefined) {
      labels = new Map();
      inventory.set(m[1]!, labels);
    }
    for (const lm of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      let values = labels.get(lm[1]!);
      if (values === undefined) {
        values = new Set();
        labels.set(lm[1]!, values);
      }
      values.add(lm[2]!);
    }
  }
  return inventory;
}

/** One round of traffic that moves every family: both frame directions, a dropped frame, a closed
 * phone, and a binary that disconnects and is reclaimed within its grace window. */
async function traffic(relay: TestRelay, serverId: string): Promise<TestClient> {
  const reclaimsBefore = await relay.metric('pyrycode_relay_grace_reclaims_total');
  const binary = await connectBinary(relay, serverId);
  const phone = await connectPhone(relay, serverId);
  const connId = await phoneConnId(phone, binary);
  binary.send(JSON.stringify({ conn_id: connId, frame: { ok: true } }));
  await phone.message(1);
  binary.send(JSON.stringify({ conn_id: 'client-nobody', frame: {} }));
  const leaving = await connectPhone(relay, serverId);
  leaving.close(1000);
  await leaving.waitClose();
  binary.close(1000);
  await binary.waitClose();
  await waitFor(
    async () => (await relay.metric('pyrycode_relay_phones_parked')) > 0,
    5_000,
    'the binary to enter its grace window',
  );
  const successor = await connectBinary(relay, serverId);
  await waitFor(
    async () => (await relay.metric('pyrycode_relay_grace_reclaims_total')) > reclaimsBefore,
    5_000,
    'the successor to reclaim the server-id',
  );
  await phone.waitClose();
  return successor;
}

// ---------------------------------------------------------------------------------------------
// PromQL text helpers (promtool does the parsing; these only find names and matchers)
// ---------------------------------------------------------------------------------------------

const PROMQL_KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan', 'Inf', 'NaN']);

/** Metric names an expression selects: identifiers that are not functions, keywords, grouping
 * labels, label matchers, strings, durations or numbers. */
function metricNamesIn(expr: string): string[] {
  let s = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  s = s.replace(/\{[^}]*\}/g, '{}');
  s = s.replace(/\[[^\]]*\]/g, '[]');
  s = s.replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  s = s.replace(/\boffset\s+-?\w+/g, ' ');
  s = s.replace(/(^|[^\w:])(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/g, '$1 ');
  const names: string[] = [];
  for (const m of s.matchAll(/[a-zA-Z_:][\w:]*/g)) {
    if (PROMQL_KEYWORDS.has(m[0])) continue;
    if (
      s
        .slice(m.index! + m[0].length)
        .trimStart()
        .startsWith('(')
    )
      continue; // a function call
    names.push(m[0]);
  }
  return names;
}

/** Problems with the names and label matchers of one expression, against the relay's inventory. */
function checkAgainstInventory(expr: string, inventory: Inventory): string[] {
  const problems: string[] = [];
  for (const name of metricNamesIn(expr)) {
    if (name !== 'up' && !inventory.has(name)) problems.push(`selects ${name}, which the relay does not export`);
  }
  for (const m of expr.matchAll(/\bpyrycode_relay_\w+/g)) {
    if (!inventory.has(m[0])) problems.push(`names ${m[0]}, which the relay does not export`);
  }
  for (const sel of expr.matchAll(/([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}/g)) {
    const name = sel[1]!;
    const labels = name === 'up' ? new Map<string, Set<string>>() : inventory.get(name);
    if (labels === undefined) continue; // reported above
    for (const mm of sel[2]!.matchAll(/(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g)) {
      const [, label, op, value] = mm as unknown as [string, string, string, string];
      if (TARGET_LABELS.has(label)) continue;
      const values = labels.get(label);
      if (values === undefined) problems.push(`${name} has no label ${label}`);
      else if (op === '=' && !values.has(value)) {
        problems.push(`${name}{${label}="${value}"} never exists (values: ${[...values].sort().join(', ')})`);
      }
    }
  }
  return problems;
}

/** Runs `promtool check rules` on the expressions as recording rules: promtool parses each one. */
function promtoolParses(exprs: string[], dir: string): { status: number | null; output: string } {
  const file = join(dir, `queries-${Math.random().toString(36).slice(2)}.yml`);
  const rules = exprs
    .map((expr, i) => `      - record: ops_query_${i}\n        expr: ${JSON.stringify(expr)}\n`)
    .join('');
  writeFileSync(file, `groups:\n  - name: queries\n    rules:\n${rules}`);
  return run('promtool', ['check', 'rules', file]);
}

// ---------------------------------------------------------------------------------------------
// alerts.yml, read as text (promtool has validated its structure; the live test reads it back
// through Prometheus's own parser)
// ---------------------------------------------------------------------------------------------

interface AlertRule {
  name: string;
  block: string;
  expr: string;
}

function alertRules(): AlertRule[] {
  const text = readFileSync(ALERTS_YML, 'utf8');
  const starts = [...text.matchAll(/^ *- alert: *(\S+) *$/gm)];
  return starts.map((m, i) => {
    const block = text.slice(m.index!, i + 1 < starts.length ? starts[i + 1]!.index : text.length);
    return { name: m[1]!, block, expr: exprOf(block) };
  });
}

function exprOf(block: string): string {
  const lines = block.split('\n');
  const at = lines.findIndex((l) => /^\s*expr:/.test(l));
  if (at < 0) throw new Error(`no expr in:\n${block}`);
  const inline = lines[at]!.replace(/^\s*expr:\s*/, '');
  if (!/^[|>][-+]?$/.test(inline)) return inline.replace(/^(['"])(.*)\1$/, '$2');
  const indent = lines[at]!.search(/\S/);
  const body: string[] = [];
  for (const line of lines.slice(at + 1)) {
    if (line.trim() !== '' && line.search(/\S/) <= indent) break;
    body.push(line.trim());
  }
  return body.join(' ').trim();
}

// ---------------------------------------------------------------------------------------------
// grafana-dashboard.json
// ---------------------------------------------------------------------------------------------

interface Target {
  expr?: string;
  refId?: string;
  datasource?: { type?: string; uid?: string };
  legendFormat?: string;
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
  collapsed?: boolean;
  fieldConfig?: { defaults?: { custom?: { stacking?: { mode?: string } } } };
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query?: unknown; definition?: string }[] };
}

const dashboard = (): Dashboard => JSON.parse(readFileSync(DASHBOARD_JSON, 'utf8')) as Dashboard;

/** Every panel, including those nested in (collapsed) rows. */
function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

/** Grafana variables replaced the way Grafana would before sending the query. */
function substitute(expr: string, rateInterval: string): string {
  return expr
    .replace(/\$__rate_interval|\$\{__rate_interval\}/g, rateInterval)
    .replace(/\$__interval|\$\{__interval\}/g, rateInterval)
    .replace(/\$__range|\$\{__range\}/g, '1h')
    .replace(/\$\{?job\}?/g, JOB)
    .replace(/\$\{?instance\}?/g, '.+');
}

/** The queries of the dashboard: panel targets, and the series selectors inside label_values(). */
function dashboardQueries(): { where: string; expr: string }[] {
  const d = dashboard();
  const queries: { where: string; expr: string }[] = [];
  for (const panel of allPanels(d.panels)) {
    for (const t of panel.targets ?? []) {
      queries.push({ where: `panel "${panel.title}" ${t.refId ?? ''}`, expr: t.expr ?? '' });
    }
  }
  for (const v of d.templating.list) {
    if (v.type !== 'query') continue;
    const q = typeof v.query === 'string' ? v.query : ((v.query as { query?: string }).query ?? '');
    const m = /^label_values\((.+),\s*(\w+)\)$/.exec(q.trim());
    if (m === null) throw new Error(`variable ${v.name}: expected label_values(<selector>, <label>), got ${q}`);
    queries.push({ where: `variable $${v.name}`, expr: m[1]! });
  }
  return queries;
}

// ---------------------------------------------------------------------------------------------

let relay: TestRelay | undefined;
let stopRuntime: (() => void) | undefined;
let inventory: Inventory = new Map();
const clients: TestClient[] = [];
let workDir = '';

beforeAll(async () => {
  workDir = mkdtempSync(join(tmpdir(), 'relay-ops-prom-'));
  // The TLS and PROXY protocol families exist only in those modes: the inventory relay has both,
  // with a certificate 60 days from expiry (a healthy relay fires no alert).
  const certExpiryMs = Date.now() + 60 * 86_400_000;
  relay = await startRelay({ gracePeriodMs: 30_000, proxyProtocol: true, tlsCertExpiryMs: () => certExpiryMs });
  stopRuntime = registerRuntimeMetrics(relay.telemetry.meter);
  clients.push(await traffic(relay, 'ops-inventory'));
  inventory = inventoryOf(await relay.scrape());
}, 30_000);

afterAll(async () => {
  for (const c of clients) c.close();
  stopRuntime?.();
  await relay?.close();
  if (workDir !== '') rmSync(workDir, { recursive: true, force: true });
});

describe('the exported series the checks compare against', () => {
  it('come from a live relay and include every family the artifacts rely on', () => {
    for (const name of [
      'pyrycode_relay_connected_binaries',
      'pyrycode_relay_connected_phones',
      'pyrycode_relay_frames_forwarded_total',
      'pyrycode_relay_grace_expiries_total',
      'pyrycode_relay_ws_upgrade_attempts_total',
      'pyrycode_relay_register_failures_total',
      'pyrycode_relay_grace_reclaim_seconds_bucket',
      'pyrycode_relay_runtime_rss_bytes',
    ]) {
      expect(inventory.has(name), name).toBe(true);
    }
    expect([...inventory.get('pyrycode_relay_frames_forwarded_total')!.get('direction')!].sort()).toEqual([
      'binary_to_phone',
      'phone_to_binary',
    ]);
  });

  it('the name finder sees through functions, grouping, matchers, ranges and numbers', () => {
    expect(
      metricNamesIn(
        'sum by (job, instance) (rate(a_total{kind="x"}[5m] offset 1h)) > 0.5 * on (job) group_left(kind) max_over_time(b[1h]) and up == 1e3 unless absent(c)',
      ),
    ).toEqual(['a_total', 'b', 'up', 'c']);
  });
});

describe('CI prerequisites', () => {
  it('promtool and prometheus are installed when CI is set', () => {
    if (!process.env.CI) return;
    expect(hasPromtool && hasPrometheus, '.ci/run must install the Debian package `prometheus`').toBe(true);
  });
});

describe.skipIf(!hasPromtool)('docs/ops/prometheus.yml and alerts.yml with promtool', () => {
  it('promtool check config passes, and it loads alerts.yml', () => {
    const r = run('promtool', ['check', 'config', PROMETHEUS_YML]);
    expect(r.status, r.output).toBe(0);
    expect(r.output).toMatch(/SUCCESS: 1 rule files found/);
    expect(r.output).toMatch(/Checking .*alerts\.yml\s+SUCCESS: \d+ rules found/);
  });

  it('promtool check rules passes with every lint enabled', () => {
    const r = run('promtool', ['check', 'rules', '--lint=all', '--lint-fatal', ALERTS_YML]);
    expect(r.status, r.output).toBe(0);
    expect(r.output).toContain(`SUCCESS: ${alertRules().length} rules found`);
  });

  it('promtool test rules passes (alerts.test.yml)', () => {
    const r = run('promtool', ['test', 'rules', ALERTS_TEST_YML]);
    expect(r.status, r.output).toBe(0);
    expect(r.output).toContain('SUCCESS');
  });

  it('the unit tests are not vacuous: a rule with a changed threshold fails them', () => {
    const dir = mkdtempSync(join(workDir, 'mutant-'));
    const rules = readFileSync(ALERTS_YML, 'utf8');
    const mutant = rules.replace('kind="ratelimit"}[5m])) > 0.2', 'kind="ratelimit"}[5m])) > 2');
    expect(mutant).not.toBe(rules);
    writeFileSync(join(dir, 'alerts.yml'), mutant);
    copyFileSync(ALERTS_TEST_YML, join(dir, 'alerts.test.yml'));
    const r = run('promtool', ['test', 'rules', join(dir, 'alerts.test.yml')]);
    expect(r.status).not.toBe(0);
    expect(r.output).toContain('PyrycodeRelayRateLimitStorm');
  });
});

describe('docs/ops/alerts.yml content', () => {
  const rules = alertRules();
  const expected = [
    'PyrycodeRelayDown',
    'PyrycodeRelayMetricsAbsent',
    'PyrycodeRelayBinariesDropped',
    'PyrycodeRelayGraceExpirySpike',
    'PyrycodeRelayPhonesAtCap',
    'PyrycodeRelayConnectionCapReached',
    'PyrycodeRelayRateLimitStorm',
    'PyrycodeRelayClaimConflictStorm',
    'PyrycodeRelayFramesStalled',
    'PyrycodeRelayCertExpiringSoon',
  ];

  it('has the alerts an SRE needs, each named once', () => {
    expect(rules.map((r) => r.name)).toEqual(expected);
  });

  it('every alert has a for duration, a severity, a summary, a description and a runbook in docs/operations.md', () => {
    for (const { name, block } of rules) {
      expect(block, name).toMatch(/^\s+for: \d+[smh]\s*$/m);
      expect(block, name).toMatch(/^\s+severity: (critical|warning)\s*$/m);
      expect(block, name).toMatch(/^\s+summary: \S/m);
      expect(block, name).toMatch(/^\s+description: \S/m);
      const runbook = /^\s+runbook_url: "?([^"\s]+)"?\s*$/m.exec(block)?.[1];
      expect(runbook, name).toBe(`docs/operations.md#alert-${name.toLowerCase()}`);
    }
  });

  it('every alert selects only series the relay exports (plus up), with label values it produces, on the scrape job', () => {
    const jobName = /job_name:\s*(\S+)/.exec(readFileSync(PROMETHEUS_YML, 'utf8'))?.[1];
    expect(jobName).toBe(JOB);
    for (const { name, expr } of rules) {
      expect(checkAgainstInventory(expr, inventory), `${name}: ${expr}`).toEqual([]);
      const selectors = [...expr.matchAll(/([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}/g)];
      expect(selectors.length, name).toBeGreaterThan(0);
      for (const sel of selectors) expect(sel[2], `${name}: ${sel[0]}`).toContain(`job="${JOB}"`);
      expect(metricNamesIn(expr).length, name).toBe(selectors.length);
    }
  });

  it('alerts.test.yml has a firing case and a quiet case for every alert', () => {
    const text = readFileSync(ALERTS_TEST_YML, 'utf8');
    const cases = [...text.matchAll(/alertname:\s*(\w+)\s*\n\s*exp_alerts:\s*(\[\])?/g)];
    for (const name of expected) {
      const mine = cases.filter((c) => c[1] === name);
      expect(
        mine.some((c) => c[2] === undefined),
        `${name} fires in some case`,
      ).toBe(true);
      expect(
        mine.some((c) => c[2] === '[]'),
        `${name} stays quiet in some case`,
      ).toBe(true);
    }
    expect(new Set(cases.map((c) => c[1]))).toEqual(new Set(expected));
  });
});

describe('docs/ops/grafana-dashboard.json', () => {
  it('is a Grafana dashboard: uid, unique panel ids, a Prometheus datasource variable, panels on the 24-column grid', () => {
    const d = dashboard();
    expect(d.uid).toBe('pyrycode-relay');
    expect(d.templating.list.map((v) => v.name)).toEqual(['datasource', 'job', 'instance']);
    const panels = allPanels(d.panels);
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of panels) {
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
      if (p.type === 'row') continue;
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a Grafana dashboard variable, literally
      expect(p.datasource, p.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets ?? []) expect(t.datasource, p.title).toEqual(p.datasource);
    }
    // No two panels of one layout level overlap (collapsed rows carry their own layout).
    const overlap = (level: Panel[]): void => {
      for (let i = 0; i < level.length; i++) {
        for (let j = i + 1; j < level.length; j++) {
          const a = level[i]!.gridPos;
          const b = level[j]!.gridPos;
          const apart = a.x + a.w <= b.x || b.x + b.w <= a.x || a.y + a.h <= b.y || b.y + b.h <= a.y;
          expect(apart, `"${level[i]!.title}" overlaps "${level[j]!.title}"`).toBe(true);
        }
      }
      for (const p of level) if (p.panels?.length) overlap(p.panels);
    };
    overlap(d.panels);
  });

  it('shows connections, frame rates by direction, stacked upgrade outcomes, register failures, grace expiries and since-boot totals', () => {
    const panels = allPanels(dashboard().panels);
    const using = (re: RegExp): Panel[] => panels.filter((p) => (p.targets ?? []).some((t) => re.test(t.expr ?? '')));
    expect(using(/pyrycode_relay_connected_binaries/).length).toBeGreaterThan(0);
    expect(using(/pyrycode_relay_connected_phones/).length).toBeGreaterThan(0);
    expect(using(/by \(direction\) \(rate\(pyrycode_relay_frames_forwarded_total/).map((p) => p.type)).toContain(
      'timeseries',
    );
    const outcomes = using(/by \(endpoint, outcome\) \(rate\(pyrycode_relay_ws_upgrade_attempts_total/);
    expect(outcomes.map((p) => p.fieldConfig?.defaults?.custom?.stacking?.mode)).toContain('normal');
    expect(using(/by \(kind\) \(rate\(pyrycode_relay_register_failures_total/).length).toBeGreaterThan(0);
    expect(using(/increase\(pyrycode_relay_grace_expiries_total/).length).toBeGreaterThan(0);
    const rows = panels.filter((p) => p.type === 'row').map((p) => p.title);
    expect(rows.some((t) => /since boot/i.test(t))).toBe(true);
    // Since-boot totals are plain sums of counters, shown as stats.
    const sinceBoot = panels.filter(
      (p) =>
        p.type === 'stat' &&
        (p.targets ?? []).some((t) => /^sum\(pyrycode_relay_\w+_total\{[^}]*\}\)$/.test(t.expr ?? '')),
    );
    expect(sinceBoot.length).toBeGreaterThanOrEqual(4);
  });

  it('every query (nested rows and variables included) names only exported series and label values', () => {
    const queries = dashboardQueries();
    expect(queries.length).toBeGreaterThan(20);
    expect(queries.some((q) => q.where.startsWith('variable'))).toBe(true);
    for (const { where, expr } of queries) {
      expect(expr, where).not.toBe('');
      expect(checkAgainstInventory(substitute(expr, '5m'), inventory), `${where}: ${expr}`).toEqual([]);
    }
  });

  it.skipIf(!hasPromtool)('every query parses (promtool, with Grafana variables substituted)', () => {
    const queries = dashboardQueries();
    const r = promtoolParses(
      queries.map((q) => substitute(q.expr, '5m')),
      workDir,
    );
    expect(r.status, r.output).toBe(0);
    expect(r.output).toContain(`SUCCESS: ${queries.length} rules found`);
    // The same check rejects a broken query, so it is not vacuous.
    const broken = promtoolParses(['sum by (direction (rate(pyrycode_relay_frames_forwarded_total[5m]))'], workDir);
    expect(broken.status).not.toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// A real Prometheus with the shipped configuration
// ---------------------------------------------------------------------------------------------

interface QueryResult {
  status: string;
  error?: string;
  data?: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
}

describe.skipIf(!hasPrometheus)('the shipped prometheus.yml and alerts.yml in a real Prometheus', () => {
  let prometheus: ChildProcess | undefined;
  afterAll(() => {
    prometheus?.kill('SIGKILL');
  });

  it('scrapes a live relay, loads every alert, fires none on a healthy relay, and answers every dashboard query', async () => {
    const live = relay!;
    const dir = mkdtempSync(join(workDir, 'prometheus-'));
    // The shipped file, with only the target and the intervals changed for a test.
    let config = readFileSync(PROMETHEUS_YML, 'utf8');
    const replace = (from: string, to: string): void => {
      expect(config, `prometheus.yml contains ${from}`).toContain(from);
      config = config.replace(from, to);
    };
    replace("targets: ['127.0.0.1:9091']", `targets: ['${new URL(live.metricsUrl).host}']`);
    replace('scrape_interval: 15s', 'scrape_interval: 1s');
    replace('scrape_timeout: 5s', 'scrape_timeout: 1s');
    replace('evaluation_interval: 15s', 'evaluation_interval: 1s');
    writeFileSync(join(dir, 'prometheus.yml'), config);
    copyFileSync(ALERTS_YML, join(dir, 'alerts.yml'));

    const port = await freePort();
    const output: string[] = [];
    prometheus = spawn(
      'prometheus',
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 },
    );
    prometheus.stdout?.on('data', (c: Buffer) => output.push(c.toString()));
    prometheus.stderr?.on('data', (c: Buffer) => output.push(c.toString()));
    const api = async <T>(path: string): Promise<T | undefined> => {
      try {
        const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(2_000) });
        return (await res.json()) as T;
      } catch {
        return undefined;
      }
    };
    const query = (promql: string): Promise<QueryResult | undefined> =>
      api<QueryResult>(`/api/v1/query?query=${encodeURIComponent(promql)}`);
    const explain = (err: unknown): Error =>
      new Error(`${(err as Error).message}\nprometheus output:\n${output.join('').slice(-3000)}`);

    try {
      await waitFor(
        async () => (await query(`up{job="${JOB}"}`))?.data?.result[0]?.value[1] === '1',
        15_000,
        'Prometheus to scrape the relay with the shipped job (up == 1)',
      );
    } catch (err) {
      throw explain(err);
    }

    // Traffic after the first scrape, so that rates over it are non-zero.
    clients.push(await traffic(live, 'ops-live'));

    // Every dashboard query answers without error and with data.
    const queries = dashboardQueries().map((q) => ({ ...q, expr: substitute(q.expr, '30s') }));
    let empty: string[] = [];
    try {
      await waitFor(
        async () => {
          empty = [];
          for (const q of queries) {
            const r = await query(q.expr);
            if (r?.status !== 'success') empty.push(`${q.where}: ${r?.error ?? 'no answer'}`);
            else if (r.data!.result.length === 0) empty.push(`${q.where}: no data for ${q.expr}`);
          }
          return empty.length === 0;
        },
        15_000,
        'every dashboard query to return data',
        250,
      );
    } catch (err) {
      throw explain(new Error(`${(err as Error).message}:\n${empty.join('\n')}`));
    }

    // Every alerting rule loaded with its labels and annotations, and has been evaluated cleanly.
    type Rules = {
      data: {
        groups: {
          rules: {
            type: string;
            name: string;
            health: string;
            lastError?: string;
            labels: Record<string, string>;
            annotations: Record<string, string>;
          }[];
        }[];
      };
    };
    let rules: Rules['data']['groups'][number]['rules'] = [];
    await waitFor(
      async () => {
        rules = (await api<Rules>('/api/v1/rules'))?.data.groups.flatMap((g) => g.rules) ?? [];
        return rules.length > 0 && rules.every((r) => r.health !== 'unknown');
      },
      10_000,
      'every rule to be evaluated',
    ).catch((err: unknown) => {
      throw explain(err);
    });
    expect(rules.map((r) => r.name)).toEqual(alertRules().map((r) => r.name));
    for (const r of rules) {
      expect(r.type, r.name).toBe('alerting');
      expect(r.health, `${r.name}: ${r.lastError ?? ''}`).toBe('ok');
      expect(['critical', 'warning'], r.name).toContain(r.labels.severity);
      expect(Object.keys(r.annotations).sort(), r.name).toEqual(['description', 'runbook_url', 'summary']);
    }

    // A healthy relay with traffic: nothing firing, nothing pending.
    const alerts = await api<{ data: { alerts: { labels: Record<string, string>; state: string }[] } }>(
      '/api/v1/alerts',
    );
    expect(alerts?.data.alerts.map((a) => `${a.labels.alertname} ${a.state}`)).toEqual([]);
  }, 60_000);
});
